package app_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/app"
	"github.com/lifeboat-dr/lifeboat/internal/audit"
)

// TestAuditHookRecordsAndSeals: an action through the service is one
// event with its result's ids, chained and sealed into the asset's
// repository, and a policy reload (refused here) is one event too.
func TestAuditHookRecordsAndSeals(t *testing.T) {
	t.Parallel()
	svc, err := newService(t, "audit:\n  retention: 30d\n")
	if err != nil {
		t.Fatal(err)
	}
	if d := svc.Policy.Audit.Retention.String(); d != "30d" {
		t.Errorf("retention %s", d)
	}
	res, err := svc.Backup(t.Context(), app.BackupRequest{Asset: "ledger"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Backup(t.Context(), app.BackupRequest{Asset: "nope"}); err == nil {
		t.Fatal("backup of an unknown asset succeeded")
	}
	svc.AuditPolicyReload(t.Context(), "/etc/lifeboat/lifeboat.yaml", errors.New("line 3: password=s3cret is wrong"))
	var events []*audit.Event
	if err := svc.AuditEvents(t.Context(), app.AuditFilter{}, func(_ *audit.Record, e *audit.Event) error {
		events = append(events, e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(events) != 3 {
		t.Fatalf("%d events: %+v", len(events), events)
	}
	b, bad, reload := events[0], events[1], events[2]
	if b.Type != audit.TypeBackup || b.Asset != "ledger" || b.Outcome != audit.OK || b.Snapshot != res.Snapshot.ID.String() || b.Actor.Keys["primary"] == "" {
		t.Errorf("backup event: %+v", b)
	}
	if bad.Outcome != audit.Failed || !strings.Contains(bad.Error, "nope") {
		t.Errorf("failed backup event: %+v", bad)
	}
	if reload.Type != audit.TypePolicyReload || reload.Outcome != audit.Failed || strings.Contains(reload.Error, "s3cret") || reload.Details["policy"] == "" {
		t.Errorf("reload event: %+v", reload)
	}
	v, err := svc.AuditVerify(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !v.OK() || v.Events != 3 || v.Seals < 2 || len(v.Chains) != 1 || v.Chains[0].Covered[0] != [2]uint64{1, 3} {
		t.Fatalf("verify: %+v", v)
	}
}

func TestAuditPolicyErrorsPinned(t *testing.T) {
	t.Parallel()
	_, err := newService(t, "audit:\n  retention: 2h\n  syslog: maybe\n")
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{"lifeboat.yaml:15: audit.retention: retention must be at least a day", `lifeboat.yaml:16: audit.syslog: syslog "maybe" is not true or false`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%v\nwant %s", err, want)
		}
	}
}
