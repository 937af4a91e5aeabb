package postgres

import (
	"strings"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
)

func mustLSN(t testing.TB, s string) lifeboat.LSN {
	t.Helper()
	l, err := lifeboat.ParseLSN(s)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestParseTimelineHistory(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []TimelineSwitch
		wantErr string
	}{
		{name: "empty", in: "", want: nil},
		{name: "one", in: "1\t0/3000158\tno recovery target specified\n",
			want: []TimelineSwitch{{1, 0x3000158, "no recovery target specified"}}},
		{name: "comments and blanks",
			in: "# comment\n\n1\t0/3000158\tno recovery target specified\n   \n" +
				"  # indented comment\n2\t0/5000000\tat restore point \"before upgrade\"\n" +
				"3\t1/0\tbefore 2024-01-02 03:04:05+00\n",
			want: []TimelineSwitch{
				{1, 0x3000158, "no recovery target specified"},
				{2, 0x5000000, `at restore point "before upgrade"`},
				{3, 0x1_00000000, "before 2024-01-02 03:04:05+00"},
			}},
		{name: "no reason, CRLF, spaces", in: "1 0/10\r\n4  0/20   reason with  spaces \r\n",
			want: []TimelineSwitch{{1, 0x10, ""}, {4, 0x20, "reason with  spaces"}}},
		{name: "equal switch points", in: "1\t0/10\tx\n2\t0/10\ty\n",
			want: []TimelineSwitch{{1, 0x10, "x"}, {2, 0x10, "y"}}},

		{name: "missing LSN", in: "1\n", wantErr: "line 1"},
		{name: "bad TLI", in: "x\t0/1\tr\n", wantErr: "invalid timeline ID"},
		{name: "TLI zero", in: "0\t0/1\tr\n", wantErr: "invalid timeline ID"},
		{name: "hex TLI", in: "A\t0/1\tr\n", wantErr: "invalid timeline ID"},
		{name: "bad LSN", in: "1\t0-1\tr\n", wantErr: "invalid LSN"},
		{name: "decreasing TLI", in: "2\t0/10\tr\n1\t0/20\tr\n", wantErr: "line 2: timeline IDs must increase"},
		{name: "repeated TLI", in: "2\t0/10\tr\n2\t0/20\tr\n", wantErr: "must increase"},
		{name: "decreasing LSN", in: "1\t0/20\tr\n2\t0/10\tr\n", wantErr: "precedes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseTimelineHistory([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %+v, %v; want error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("entry %d = %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestTimelineForLSN(t *testing.T) {
	// Timeline 1 until 0/3000158, then 2 until 0/5000000, then 4 (3 was
	// abandoned on another branch), and 5 from 1/0.
	hist, err := ParseTimelineHistory([]byte("1\t0/3000158\tr\n2\t0/5000000\tr\n4\t1/0\tr\n"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		lsn  string
		want uint32
	}{
		{"0/0", 1}, {"0/3000157", 1}, {"0/3000158", 2}, {"0/4FFFFFF", 2},
		{"0/5000000", 4}, {"0/FFFFFFFF", 4}, {"1/0", 5}, {"FFFFFFFF/FFFFFFFF", 5},
	}
	for _, tt := range tests {
		if got := TimelineForLSN(hist, 5, mustLSN(t, tt.lsn)); got != tt.want {
			t.Errorf("TimelineForLSN(%s) = %d, want %d", tt.lsn, got, tt.want)
		}
	}
	if got := TimelineForLSN(nil, 1, 12345); got != 1 {
		t.Errorf("TimelineForLSN with no history = %d, want 1", got)
	}
	for tli, want := range map[uint32]bool{1: true, 2: true, 3: false, 4: true, 5: true, 6: false} {
		if got := TimelineOnPath(hist, 5, tli); got != want {
			t.Errorf("TimelineOnPath(5, %d) = %v, want %v", tli, got, want)
		}
	}
}

func FuzzParseTimelineHistory(f *testing.F) {
	f.Add([]byte("1\t0/3000158\tno recovery target specified\n2\t0/5000000\tat restore point \"x\"\n"))
	f.Add([]byte("# c\n\n1 0/1\n"))
	f.Add([]byte("1\t0/3000158"))
	f.Fuzz(func(t *testing.T, data []byte) {
		hist, err := ParseTimelineHistory(data)
		if err != nil {
			return
		}
		for i := 1; i < len(hist); i++ {
			if hist[i].TLI <= hist[i-1].TLI || hist[i].SwitchLSN < hist[i-1].SwitchLSN {
				t.Fatalf("accepted out-of-order history %+v", hist)
			}
		}
		if len(hist) > 0 {
			last := hist[len(hist)-1]
			if got := TimelineForLSN(hist, last.TLI+1, last.SwitchLSN); got != last.TLI+1 {
				t.Fatalf("switch point of last entry maps to %d, want the target %d", got, last.TLI+1)
			}
		}
	})
}
