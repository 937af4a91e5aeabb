package repo

import (
	"strings"
	"testing"
)

// TestCanaryNotReported: lifeboat check's canary is no object of the repository. A credential
// that may delete but not take its delete marker off again leaves it several versions, the newest
// of which authenticates as nothing; verify must not report it.
func TestCanaryNotReported(t *testing.T) {
	t.Parallel()
	s := newVersionedSite(t, "canary")
	be := s.as(t, "backup")
	name := CanaryArea + "/host"
	if err := be.Put(t.Context(), name, strings.NewReader("canary"), 6); err != nil {
		t.Fatal(err)
	}
	s.overwrite(t, name)
	// Something that is part of the repository, overwritten the same way, is still reported:
	// the test's store does show versions.
	s.overwrite(t, "config")
	r := s.open(t, be, nil)
	rep, err := r.CheckVersions(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Checked {
		t.Fatalf("versions not checked: %s", rep.Unchecked)
	}
	var names []string
	for _, o := range rep.Overwritten {
		names = append(names, o.Name)
	}
	if len(names) != 1 || names[0] != "config" {
		t.Fatalf("overwritten objects reported: %q, want config alone", names)
	}
}
