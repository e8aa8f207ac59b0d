package gguf

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestWriteRead(t *testing.T) {
	f := &File{
		Meta: map[string]any{
			"general.architecture": "llama",
			"llama.context_length": uint32(4096),
			"general.name":         "x",
			"some.flag":            true,
			"some.float":           float32(0.5),
			"some.int":             int32(-3),
			"tokenizer.tokens":     []string{"a", "b", "c"},
			"tokenizer.types":      []int32{1, 1, 3},
			"scores":               []float32{0, 1},
		},
		Tensors: []Tensor{
			{Name: "a", Dims: []uint64{3, 2}, Data: []float32{1, 2, 3, 4, 5, 6}},
			{Name: "b", Dims: []uint64{1}, Data: []float32{7}},
		},
	}
	var buf bytes.Buffer
	if err := f.Write(&buf); err != nil {
		t.Fatal(err)
	}
	var again bytes.Buffer
	f.Write(&again)
	if !bytes.Equal(buf.Bytes(), again.Bytes()) {
		t.Fatal("two writes of one File differ")
	}
	if buf.Len()%Alignment != 0 {
		t.Fatalf("file length %d is not aligned to %d", buf.Len(), Alignment)
	}
	info, err := Read(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if info.Version != Version || info.Tensors != 2 || info.Architecture() != "llama" || info.ContextLength() != 4096 {
		t.Fatalf("info: %+v", info)
	}
	if info.Meta["some.flag"] != true || info.Meta["some.float"] != float32(0.5) || info.Meta["some.int"] != int32(-3) || info.Meta["tokenizer.tokens#len"] != uint64(3) {
		t.Fatalf("meta: %+v", info.Meta)
	}
	// The data of the last tensor ends the file: 7.0 as float32.
	if tail := buf.Bytes()[buf.Len()-Alignment:]; !bytes.Equal(tail[:4], []byte{0, 0, 0xe0, 0x40}) {
		t.Fatalf("last tensor's data: % x", tail[:4])
	}
}

func TestWriteRefusesBadTensor(t *testing.T) {
	f := &File{Tensors: []Tensor{{Name: "a", Dims: []uint64{2, 2}, Data: []float32{1}}}}
	if err := f.Write(&bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "dims [2 2] hold 4 values") {
		t.Fatalf("err = %v", err)
	}
	if err := (&File{Meta: map[string]any{"x": 1.5}}).Write(&bytes.Buffer{}); err == nil {
		t.Fatal("a float64 value was accepted")
	}
}

func TestReadRefusesOtherFiles(t *testing.T) {
	for _, in := range []string{"", "GGU", "PK\x03\x04 a zip file", "GGUF\x09\x00\x00\x00"} {
		if _, err := Read(strings.NewReader(in)); err == nil {
			t.Errorf("%q: no error", in)
		} else if len(in) < 8 && !errors.Is(err, ErrNotGGUF) {
			t.Errorf("%q: %v, want ErrNotGGUF", in, err)
		}
	}
	// A header that promises more than it holds.
	var buf bytes.Buffer
	(&File{Meta: map[string]any{"general.name": "x"}}).Write(&buf)
	if _, err := Read(bytes.NewReader(buf.Bytes()[:30])); err == nil {
		t.Error("a truncated header was read")
	}
}
