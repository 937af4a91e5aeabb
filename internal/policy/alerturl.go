package policy

import (
	"errors"
	"net"
	"net/url"
	"strings"
)

// CheckAlertURL accepts where an alert is posted: an https URL, or plain
// http to this host's loopback only (a local relay). Anything else would
// carry the body, with a routing key or a signature, and a URL that is
// often itself the secret (Slack's), across the network in the clear.
// The error never quotes the URL.
func CheckAlertURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return errors.New("must be an https URL")
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
		return nil
	case "http":
		if isLoopback(u.Hostname()) {
			return nil
		}
		return errors.New("must be an https URL (plain http only to this host's loopback, 127.0.0.1, ::1 or localhost)")
	}
	return errors.New("must be an https URL")
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
