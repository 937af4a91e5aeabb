package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeboat-dr/lifeboat/internal/app"
	"github.com/lifeboat-dr/lifeboat/internal/durable"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

type reportOptions struct {
	format     string
	since      string
	out        string
	repository string
}

func newReportCommand(g *globalOptions) *cobra.Command {
	var o reportOptions
	cmd := &cobra.Command{
		Use:   "report [--format md|html|json] [--since 30d|2026-11-01] [--out FILE]",
		Short: "Write the DR report: testing schedule, drill results, objectives against what was measured",
		Long: `Write the disaster-recovery report an auditor asks for, filled from what
Lifeboat recorded: the Backup Testing Schedule (each asset's drill, how often,
when last tested, the result), the DR Test Results Log (every drill with its
RTO and RPO achieved and the issues found), each tier's objectives against
the measured values, the restore throughput seen in drills with the RTO it
forecasts for each asset's current size, and the backup runs.

Drill reports come from the catalog of the policy's state_dir, or with
--repository from the reports stored in that repository (a copy carries
them too). See docs/report.md.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runReport(cmd.Context(), g, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.format, "format", "md", "md, html or json")
	f.StringVar(&o.since, "since", "", "only records from this moment: a duration back from now (30d), a date (2026-11-01) or an RFC 3339 time")
	f.StringVar(&o.out, "out", "", "write the report to this file (replaced atomically) instead of standard output")
	f.StringVar(&o.repository, "repository", "", "read the drill reports stored in this repository instead of the catalog")
	return cmd
}

func runReport(ctx context.Context, g *globalOptions, o reportOptions) error {
	switch o.format {
	case "md", "html", "json":
	default:
		return usagef("--format %q: use md, html or json", o.format)
	}
	p, err := g.policy()
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	since, err := parseSince(o.since, now)
	if err != nil {
		return err
	}
	svc := app.New(p, app.Options{Log: g.log, Now: g.now(time.Now)})
	defer svc.Close()
	data, err := svc.Report(ctx, o.format, since, now, o.repository)
	if err != nil {
		return err
	}
	if o.out == "" {
		_, err := g.stdout.Write(data)
		return err
	}
	return replaceFile(o.out, data)
}

// parseSince reads --since: a policy duration back from now, a date (from
// midnight UTC) or an RFC 3339 time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := policy.ParseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Time{}, usagef("--since %q: write a duration (30d), a date (2026-11-01) or an RFC 3339 time", s)
}

// replaceFile writes the report so that FILE is the old one or the whole
// new one, never half of it, readable by its owner only (like every file
// Lifeboat makes: it names assets, hosts and failures).
func replaceFile(path string, data []byte) error {
	if err := durable.Replace(path, data, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
