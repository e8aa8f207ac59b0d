package config

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in      string
		want    Size
		wantErr string // substring of the message; "" means success
		hint    string // substring of the hint
	}{
		{in: "2Gi", want: 2 << 30},
		{in: "2g", want: 2 << 30},
		{in: "2G", want: 2 << 30},
		{in: "512Mi", want: 512 << 20},
		{in: "512m", want: 512 << 20},
		{in: "64Ki", want: 64 << 10},
		{in: "1Ti", want: 1 << 40},
		{in: "1.5Gi", want: 3 << 29},
		{in: "0.5Mi", want: 512 << 10},
		{in: "0.1Ki", want: 103}, // 102.4 rounded up
		{in: "1073741824", want: 1 << 30},
		{in: "0", want: 0},
		{in: " 2Gi ", want: 2 << 30},
		{in: "2 GB", wantErr: `"2 GB" is not a size`, hint: `did you mean "2Gi"?`},
		{in: "2GB", wantErr: "is not a size", hint: `did you mean "2Gi"?`},
		{in: "512mb", wantErr: "is not a size", hint: `did you mean "512Mi"?`},
		{in: "-1", wantErr: `"-1" is negative`, hint: "e.g. 2Gi, 512Mi"},
		{in: "-2Gi", wantErr: "is negative"},
		{in: "lots", wantErr: `"lots" is not a size`, hint: "Ki, Mi, Gi, Ti"},
		{in: "", wantErr: "is not a size"},
		{in: "Gi", wantErr: "is not a size"},
		{in: "1.5", wantErr: "not a whole number of bytes", hint: "1.5Gi"},
		{in: "1.", wantErr: "is not a size"},
		{in: ".5Gi", wantErr: "is not a size"},
		{in: "2Gib", wantErr: "is not a size"},
		{in: "1e9", wantErr: "is not a size"},
		{in: "9223372036854775807", want: 1<<63 - 1},
		{in: "9223372036854775808", wantErr: "too large"},
		{in: "8192Pi", wantErr: "is not a size"},
		{in: "99999999999Ti", wantErr: "too large"},
		{in: strings.Repeat("9", 100), wantErr: "too large"},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if tt.wantErr == "" {
			if err != nil || got != tt.want {
				t.Errorf("ParseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
			}
			continue
		}
		var p Problem
		if !errors.As(err, &p) {
			t.Errorf("ParseSize(%q) = %d, %v; want a Problem containing %q", tt.in, got, err, tt.wantErr)
			continue
		}
		if !strings.Contains(p.Msg, tt.wantErr) || !strings.Contains(p.Hint, tt.hint) {
			t.Errorf("ParseSize(%q): msg %q hint %q; want msg ~ %q, hint ~ %q", tt.in, p.Msg, p.Hint, tt.wantErr, tt.hint)
		}
	}
}

func TestSizeString(t *testing.T) {
	tests := []struct {
		in   Size
		want string
	}{
		{2 << 30, "2Gi"},
		{512 << 20, "512Mi"},
		{1536 << 20, "1536Mi"},
		{64 << 10, "64Ki"},
		{3 << 40, "3Ti"},
		{1000, "1000"},
		{0, "0"},
		{-1 << 30, "-1073741824"},
	}
	for _, tt := range tests {
		if got := tt.in.String(); got != tt.want {
			t.Errorf("Size(%d).String() = %q, want %q", int64(tt.in), got, tt.want)
		}
		if tt.in < 0 {
			continue
		}
		back, err := ParseSize(tt.in.String())
		if err != nil || back != tt.in {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tt.in.String(), back, err, tt.in)
		}
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr string
		hint    string
	}{
		{in: "90s", want: 90 * time.Second},
		{in: "2m", want: 2 * time.Minute},
		{in: "1m30s", want: 90 * time.Second},
		{in: "-5s", want: -5 * time.Second}, // parses; Validate refuses it
		{in: "120", wantErr: `"120" is not a duration`, hint: `did you mean "120s"?`},
		{in: "soon", wantErr: `"soon" is not a duration`, hint: "90s, 2m"},
		{in: "", wantErr: "is not a duration"},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if tt.wantErr == "" {
			if err != nil || got.D() != tt.want {
				t.Errorf("ParseDuration(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
			continue
		}
		var p Problem
		if !errors.As(err, &p) || !strings.Contains(p.Msg, tt.wantErr) || !strings.Contains(p.Hint, tt.hint) {
			t.Errorf("ParseDuration(%q) error = %v; want msg ~ %q, hint ~ %q", tt.in, err, tt.wantErr, tt.hint)
		}
	}
}

func TestUnitsJSON(t *testing.T) {
	type pair struct {
		S Size     `json:"s"`
		D Duration `json:"d"`
	}
	b, err := json.Marshal(pair{S: 2 << 30, D: Duration(2 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), `{"s":"2Gi","d":"2m0s"}`; got != want {
		t.Errorf("marshal = %s, want %s", got, want)
	}

	tests := []struct {
		in      string
		want    pair
		wantErr bool
	}{
		{in: `{"s":"2Gi","d":"2m0s"}`, want: pair{2 << 30, Duration(2 * time.Minute)}},
		{in: `{"s":"512m","d":"90s"}`, want: pair{512 << 20, Duration(90 * time.Second)}},
		{in: `{"s":1073741824,"d":5000000000}`, want: pair{1 << 30, Duration(5 * time.Second)}},
		{in: `{"s":null,"d":null}`, want: pair{7, 7}}, // null leaves values alone
		{in: `{"s":"2 GB"}`, wantErr: true},
		{in: `{"s":1.5}`, wantErr: true},
		{in: `{"d":"120"}`, wantErr: true},
		{in: `{"d":true}`, wantErr: true},
	}
	for _, tt := range tests {
		got := pair{S: 7, D: 7}
		err := json.Unmarshal([]byte(tt.in), &got)
		if tt.wantErr {
			if err == nil {
				t.Errorf("unmarshal %s: no error, got %+v", tt.in, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("unmarshal %s = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}
