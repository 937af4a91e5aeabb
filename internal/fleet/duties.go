package fleet

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/alert"
	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

// CheckAgent is the check of a fleet alert the leader raises for an asset
// whose agent has gone silent.
const CheckAgent = "agent"

// SourceFleet is the source of the alerts the leader's fleet check
// raises; an agent's own alerts carry its host name.
const SourceFleet = "fleet"

// Duties are what the fleet's leader does, and only the leader: every
// Interval the fleet check over every asset of every host (the asset rows
// the agents publish: a row not refreshed within StaleAfter is an asset
// nobody watches, an alert), and the delivery of every alert in the
// alerts table, raised by the agents or by the fleet check, once.
type Duties struct {
	Store *Store
	// Host is this agent's name, recorded as who sent what.
	Host string
	// Policy returns the policy in force: its alerts are where alerts go,
	// its check.interval the default Interval.
	Policy func() *policy.Policy
	// Interval is how often the duties run; 0: the policy's
	// check.interval. StaleAfter is how old an asset's row may get before
	// its agent counts as silent; 0: 3×Interval + 1 minute, so an agent
	// that misses a check or two is not yet news.
	Interval, StaleAfter time.Duration
	Now                  func() time.Time
	Log                  *slog.Logger
	// HTTPClient sends the HTTP alerts; nil: a plain client.
	HTTPClient *http.Client
	// Checked, if set, receives each fleet check's outcome (tests,
	// metrics).
	Checked func(FleetCheck)

	notifier *alert.Notifier
	notified *policy.Policy // the policy notifier was made of
	lastSum  string         // the last fleet check's counts logged
}

// FleetAsset is one asset of one host as the fleet check saw it.
type FleetAsset struct {
	Host, Name, Kind, Tier, State string
	Updated                       time.Time
	// Stale is set when every row of the host is older than the bound:
	// its agent has not reported for that long. Retired is set when this
	// row alone is: the agent no longer has the asset.
	Stale, Retired bool
}

// FleetCheck is one run of the fleet check.
type FleetCheck struct {
	Time   time.Time
	By     string // the leader that ran it
	Assets []FleetAsset
	// Failing counts the assets whose agent reports them failing (their
	// alerts are the agent's), Stale those no agent reports on (alerts of
	// the fleet check).
	Failing, Stale int
}

// Run does the duties every interval until ctx ends (the leadership is
// lost, or the agent stops). A round that fails is logged and tried again
// at the next.
func (d *Duties) Run(ctx context.Context) {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	failing := ""
	for ctx.Err() == nil {
		err := d.Round(ctx)
		switch {
		case err != nil && ctx.Err() == nil && leaderLine(err) != failing:
			failing = leaderLine(err)
			d.Log.Warn("fleet duties: round failed; retrying", "error", failing)
		case err == nil && failing != "":
			failing = ""
			d.Log.Info("fleet duties: rounds succeed again")
		}
		t := time.NewTimer(d.interval())
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
}

func (d *Duties) interval() time.Duration {
	if d.Interval > 0 {
		return d.Interval
	}
	if p := d.Policy(); p != nil && p.Check.Interval > 0 {
		return time.Duration(p.Check.Interval)
	}
	return policy.DefaultCheckInterval
}

func (d *Duties) staleAfter() time.Duration {
	if d.StaleAfter > 0 {
		return d.StaleAfter
	}
	return 3*d.interval() + time.Minute
}

// Round is one turn of the duties: the fleet check, its alerts into the
// table, then every alert due delivered.
func (d *Duties) Round(ctx context.Context) error {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	// A catalog that was down when the agent started is migrated by
	// whichever agent reaches it first.
	if err := d.Store.Migrate(ctx); err != nil {
		return err
	}
	now := d.Now()
	fc, err := d.Check(ctx, now)
	if err != nil {
		return err
	}
	var problems []HostProblem
	for _, a := range fc.Assets {
		if a.Stale {
			problems = append(problems, HostProblem{Host: a.Host, Problem: alert.Problem{
				Asset: a.Name, Check: CheckAgent,
				Summary: fmt.Sprintf("the agent on %s has not reported this asset since %s: its backups and checks are not watched",
					a.Host, lifeboat.FormatTime(a.Updated)),
			}})
		}
	}
	if err := d.Store.SyncAlerts(ctx, SourceFleet, problems, now); err != nil {
		return err
	}
	if d.Checked != nil {
		d.Checked(fc)
	}
	if sum := fmt.Sprintf("%d/%d/%d", len(fc.Assets), fc.Failing, fc.Stale); sum != d.lastSum {
		d.lastSum = sum // logged when it changes, not every round
		d.Log.Info("fleet check", "assets", len(fc.Assets), "failing", fc.Failing, "silent", fc.Stale)
	}
	n, err := d.notifierFor(d.Policy())
	if err != nil {
		return err
	}
	if err := d.Store.DeliverAlerts(ctx, n, d.Host, d.Now); err != nil {
		return err
	}
	return d.Store.PruneAlerts(ctx, now.Add(-AlertKeep))
}

// Check reads every asset row of every host and judges it as of now. An
// agent publishes all its assets at each check, so a host whose rows are
// all older than the bound has a silent agent (each of its assets is
// Stale), while one old row of a host whose others are fresh is an asset
// gone from that agent's policy (Retired: no alert).
func (d *Duties) Check(ctx context.Context, now time.Time) (FleetCheck, error) {
	fc := FleetCheck{Time: now, By: d.Host}
	assets, err := d.Store.Assets(ctx)
	if err != nil {
		return fc, fmt.Errorf("fleet check: %w", err)
	}
	bound := d.staleAfter()
	newest := map[string]time.Time{}
	for _, r := range assets {
		if r.Updated.After(newest[r.Host]) {
			newest[r.Host] = r.Updated
		}
	}
	for _, r := range assets {
		a := FleetAsset{Host: r.Host, Name: r.Name, Kind: r.Kind, Tier: r.Tier, State: r.State, Updated: r.Updated}
		old := now.Sub(r.Updated) > bound
		a.Stale = old && now.Sub(newest[r.Host]) > bound
		a.Retired = old && !a.Stale
		switch {
		case a.Stale:
			fc.Stale++
		case !a.Retired && a.State == assetFailing:
			fc.Failing++
		}
		fc.Assets = append(fc.Assets, a)
	}
	return fc, nil
}

// assetFailing is the state an agent publishes for an asset with a
// failing check (the dashboard's red).
const assetFailing = "failing"

// notifierFor makes the senders of p's alerts, once per policy; nil when
// p has none (alerts are then kept in the table, and sent once the
// policy names a destination).
func (d *Duties) notifierFor(p *policy.Policy) (*alert.Notifier, error) {
	if p == d.notified && d.notifier != nil {
		return d.notifier, nil
	}
	if p == nil || len(p.Alerts) == 0 {
		d.notifier, d.notified = nil, p
		return nil, nil
	}
	// The state file is never written: what was sent is in the table.
	n, err := alert.New(p.Alerts, "", alert.Options{Host: d.Host, Log: d.Log, HTTPClient: d.HTTPClient, Now: d.Now})
	if err != nil {
		return nil, err
	}
	d.notifier, d.notified = n, p
	return n, nil
}
