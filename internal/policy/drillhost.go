package policy

import (
	"strings"
	"unicode"
)

// drillHost reads drill_host: the one agent of a fleet that runs the
// scheduled drills (docs/fleet.md), so that agents sharing a policy file
// do not each drill every asset. Its drills read the assets'
// repositories, which it must reach.
func (c *converter) drillHost(raw string) string {
	if !c.idx.has("drill_host") {
		return ""
	}
	h := c.nonEmpty("drill_host", raw)
	if h != "" && (len(h) > 253 || strings.IndexFunc(h, func(r rune) bool {
		return unicode.IsSpace(r) || unicode.IsControl(r) || r == '/'
	}) >= 0) {
		c.fail("drill_host", 0, "drill_host must be an agent's host name without spaces or slashes, e.g. db-1")
	}
	return h
}
