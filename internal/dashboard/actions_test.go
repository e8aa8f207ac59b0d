package dashboard

import (
	"testing"
)

func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{"/instances?group=a": "/instances?group=a", "//evil.example": "/", "https://evil.example": "/", "/\\evil": "/", "": "/"} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestBuckets(t *testing.T) {
	v := make([]int64, 1440)
	for i := range v {
		v[i] = 1
	}
	b := buckets(v, 60)
	if len(b) != 60 || b[0] != 24 || b[59] != 24 {
		t.Fatalf("buckets: %d, %v", len(b), b[:3])
	}
	if got := buckets([]int64{1, 2}, 60); len(got) != 2 {
		t.Fatalf("short input changed: %v", got)
	}
}
