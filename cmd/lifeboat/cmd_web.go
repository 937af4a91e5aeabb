package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeboat-dr/lifeboat/internal/app"
	"github.com/lifeboat-dr/lifeboat/internal/web"
)

func newWebCommand(g *globalOptions) *cobra.Command {
	var listen string
	cmd := &cobra.Command{
		Use:   "web [--listen ADDR]",
		Short: "Serve the dashboard (overview, assets, drills, report, approvals, audit) and its JSON API",
		Long: `Serve the dashboard: server-rendered pages and a JSON API (docs/web.md) on
the policy's web.listen (127.0.0.1:8420 unless the policy says otherwise), over
TLS when web.tls_cert and web.tls_key are set. Sign in with a local account
(lifeboat web user add) or through OpenID Connect (web.oidc), or call the API
with a token (lifeboat web token create). Approvers approve with a security key
when approvals.webauthn_signers is set. lifeboat serve --http ADDR serves the
same dashboard from the daemon.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error { return runWeb(cmd.Context(), g, listen) },
	}
	cmd.Flags().StringVar(&listen, "listen", "", "address to listen on instead of the policy's web.listen")
	user := &cobra.Command{Use: "user", Short: "Manage the dashboard's local accounts"}
	var role string
	var passwordStdin bool
	add := &cobra.Command{
		Use:   "add NAME --role ROLE --password-stdin",
		Short: "Create a local account; prints its TOTP secret and otpauth URL",
		Args:  exactArgs(1, "the user's NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !passwordStdin {
				return usagef("web user add: give the password on standard input with --password-stdin")
			}
			return runWebUserAdd(cmd.Context(), g, args[0], role, cmd.InOrStdin())
		},
	}
	add.Flags().StringVar(&role, "role", "", "viewer, operator, approver or admin")
	add.Flags().BoolVar(&passwordStdin, "password-stdin", false, "read the password from the first line of standard input")
	user.AddCommand(add)
	token := &cobra.Command{Use: "token", Short: "Manage API tokens"}
	var tokenRole string
	create := &cobra.Command{
		Use:   "create --role ROLE",
		Short: "Create an API token and print it (only its hash is kept)",
		Args:  exactArgs(0, "no arguments"),
		RunE:  func(cmd *cobra.Command, _ []string) error { return runWebTokenCreate(cmd.Context(), g, tokenRole) },
	}
	create.Flags().StringVar(&tokenRole, "role", "", "viewer, operator, approver or admin")
	token.AddCommand(create)
	cmd.AddCommand(user, token)
	return cmd
}

// webFresh is how long the dashboard serves an overview before gathering
// it anew: reading every repository and running every check takes seconds
// for hundreds of assets, which each page view must not repeat.
const webFresh = 30 * time.Second

func runWeb(ctx context.Context, g *globalOptions, listen string) error {
	svc, err := g.service()
	if err != nil {
		return err
	}
	return serveDashboard(ctx, g, svc, listen)
}

// serveDashboard serves svc's dashboard on listen (the policy's
// web.listen when ""), over TLS when the policy has a certificate, until
// ctx ends; `lifeboat web` and `lifeboat serve --http` both run it.
func serveDashboard(ctx context.Context, g *globalOptions, svc *app.Service, listen string) error {
	d, err := openDashboard(g, svc, listen)
	if err != nil {
		return err
	}
	return d.serve(ctx)
}

// dashboard is the dashboard's HTTP server with its socket open.
type dashboard struct {
	srv       *http.Server
	ln        net.Listener
	cert, key string
}

// openDashboard listens, so that an address in use or refused is an error
// before anything else starts.
func openDashboard(g *globalOptions, svc *app.Service, listen string) (*dashboard, error) {
	wp := svc.Policy.Web
	if listen == "" {
		listen = wp.Listen
	}
	if _, _, err := net.SplitHostPort(listen); err != nil {
		return nil, usagef("listen address %q: write host:port, e.g. 127.0.0.1:8420", listen)
	}
	tls := wp.TLSCert != ""
	srv := &http.Server{Addr: listen, Handler: web.New(svc, web.Options{TLS: tls, SessionTTL: time.Duration(wp.Session), Log: g.log, Fresh: webFresh, Listen: listen}),
		ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, IdleTimeout: 2 * time.Minute}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("web: %w", err)
	}
	scheme := "http"
	if tls {
		scheme = "https"
	}
	fmt.Fprintf(g.stdout, "lifeboat web: serving on %s://%s\n", scheme, ln.Addr())
	return &dashboard{srv: srv, ln: ln, cert: wp.TLSCert, key: wp.TLSKey}, nil
}

// serve serves until ctx ends, then shuts down, letting requests in
// flight finish for up to 10 seconds.
func (d *dashboard) serve(ctx context.Context) error {
	done := make(chan error, 1)
	go func() {
		if d.cert != "" {
			done <- d.srv.ServeTLS(d.ln, d.cert, d.key)
		} else {
			done <- d.srv.Serve(d.ln)
		}
	}()
	select {
	case err := <-done:
		return fmt.Errorf("web: %w", err)
	case <-ctx.Done():
	}
	shut, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := d.srv.Shutdown(shut); err != nil {
		return fmt.Errorf("web: shutdown: %w", err)
	}
	if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("web: %w", err)
	}
	return nil
}

func runWebUserAdd(ctx context.Context, g *globalOptions, name, roleName string, stdin io.Reader) (err error) {
	role, err := web.ParseRole(roleName)
	if err != nil {
		return usagef("--role: %v", err)
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read the password: %w", err)
	}
	password := strings.TrimRight(line, "\r\n")
	svc, err := g.service()
	if err != nil {
		return err
	}
	defer func() {
		svc.Audited(ctx, "web-user-add", "", "")(&err, map[string]string{"user": name, "role": string(role)})
	}()
	key, err := web.OpenAccounts(web.AccountsPath(svc.Policy.StateDir)).AddUser(name, role, password, svc.Now())
	if err != nil {
		return usagef("web user add: %v", err)
	}
	fmt.Fprintf(g.stdout, "user %s (%s) created\nTOTP secret: %s\notpauth URL: %s\n", name, role, key.Secret(), key.URL())
	return nil
}

func runWebTokenCreate(ctx context.Context, g *globalOptions, roleName string) (err error) {
	role, err := web.ParseRole(roleName)
	if err != nil {
		return usagef("--role: %v", err)
	}
	svc, err := g.service()
	if err != nil {
		return err
	}
	var id string
	defer func() {
		svc.Audited(ctx, "web-token-create", "", "")(&err, map[string]string{"token": id, "role": string(role)})
	}()
	id, token, err := web.OpenAccounts(web.AccountsPath(svc.Policy.StateDir)).CreateToken(role, svc.Now())
	if err != nil {
		return err
	}
	fmt.Fprintln(g.stdout, token)
	return nil
}
