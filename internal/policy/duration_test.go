package policy

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestParseDuration(t *testing.T) {
	const d, w = 24 * time.Hour, 7 * 24 * time.Hour
	tests := []struct {
		in   string
		want time.Duration
		err  string
	}{
		{in: "5m", want: 5 * time.Minute},
		{in: "1h", want: time.Hour},
		{in: "36h", want: 36 * time.Hour},
		{in: "90s", want: 90 * time.Second},
		{in: "1.5h", want: 90 * time.Minute},
		{in: "250ms", want: 250 * time.Millisecond},
		{in: "7d", want: 7 * d},
		{in: "90d", want: 90 * d},
		{in: "2w", want: 2 * w},
		{in: "1w3d", want: w + 3*d},
		{in: "1d12h", want: 36 * time.Hour},
		{in: "12h1d", want: 36 * time.Hour},
		{in: "1d1h30m", want: d + 90*time.Minute},
		{in: "0", want: 0},
		{in: "0d", want: 0},
		{in: "-1h", want: -time.Hour},
		{in: "+2d", want: 2 * d},
		{in: "", err: "use a number and a unit"},
		{in: "-", err: "use a number and a unit"},
		{in: "5", err: "missing unit"},
		{in: "5x", err: "use a number and a unit"},
		{in: "d", err: "use a number and a unit"},
		{in: "1.5d", err: "whole numbers"},
		{in: "5 m", err: "use a number and a unit"},
		{in: "1h-1m", err: "use a number and a unit"},
		{in: "1..5h", err: "malformed number"},
		{in: "15251w", err: "too long"},
		{in: "106751d24h", err: "too long"},
		{in: "99999999999999999999d", err: "whole numbers"},
		{in: "3000000h", err: "too long"},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("ParseDuration(%q) = %v, %v; want an error containing %q", tt.in, got, err, tt.err)
		case tt.err != "" && !strings.Contains(err.Error(), `"`+tt.in+`"`):
			t.Errorf("ParseDuration(%q) error %q does not quote the input", tt.in, err)
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestDurationString(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"},
		{5 * time.Minute, "5m"},
		{time.Hour, "1h"},
		{36 * time.Hour, "36h"},
		{90 * time.Minute, "1h30m"},
		{90 * time.Second, "1m30s"},
		{24 * time.Hour, "1d"},
		{90 * 24 * time.Hour, "90d"},
		{14 * 24 * time.Hour, "2w"},
		{-2 * time.Hour, "-2h"},
		{1500 * time.Millisecond, "1.5s"},
	}
	for _, tt := range tests {
		got := Duration(tt.d).String()
		if got != tt.want {
			t.Errorf("Duration(%v).String() = %q, want %q", tt.d, got, tt.want)
		}
		back, err := ParseDuration(got)
		if err != nil || back != tt.d {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v back", got, back, err, tt.d)
		}
	}
}

func TestDurationCodecs(t *testing.T) {
	var v struct {
		RPO Duration `yaml:"rpo" json:"rpo"`
	}
	if err := yaml.Unmarshal([]byte("rpo: 2w\n"), &v); err != nil || v.RPO.Std() != 14*24*time.Hour {
		t.Fatalf("yaml.Unmarshal = %v, %v", v.RPO, err)
	}
	for src, want := range map[string]string{
		"rpo: 5x\n":   `line 1: invalid duration "5x"`,
		"rpo: [5m]\n": "line 1: a duration must be a single value",
	} {
		if err := yaml.Unmarshal([]byte(src), &v); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("yaml.Unmarshal(%q) error = %v, want one containing %q", src, err, want)
		}
	}
	out, err := yaml.Marshal(v)
	if err != nil || string(out) != "rpo: 2w\n" {
		t.Errorf("yaml.Marshal = %q, %v", out, err)
	}
	j, err := json.Marshal(v)
	if err != nil || string(j) != `{"rpo":"2w"}` {
		t.Errorf("json.Marshal = %s, %v", j, err)
	}
	if err := json.Unmarshal([]byte(`{"rpo":"36h"}`), &v); err != nil || v.RPO.Std() != 36*time.Hour {
		t.Errorf("json.Unmarshal = %v, %v", v.RPO, err)
	}
	if err := json.Unmarshal([]byte(`{"rpo":"soon"}`), &v); err == nil {
		t.Error("json.Unmarshal accepted \"soon\"")
	}
}
