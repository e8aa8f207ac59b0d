// Package gguf writes and reads GGUF files (version 3), the model format of
// llama.cpp: a header of typed key/value metadata, a table of tensors, then
// the tensors' data, aligned.
//
// It does what THON needs and no more: write a small model from float32
// tensors (the test model), and read a file's metadata to check that a
// configured model is what it says it is.
package gguf

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
)

// Magic starts every GGUF file.
const Magic = "GGUF"

// Version is the format version this package writes.
const Version = 3

// Alignment of the tensor data (general.alignment's default).
const Alignment = 32

// Value types on the wire.
const (
	typeUint8   = 0
	typeInt8    = 1
	typeUint16  = 2
	typeInt16   = 3
	typeUint32  = 4
	typeInt32   = 5
	typeFloat32 = 6
	typeBool    = 7
	typeString  = 8
	typeArray   = 9
	typeUint64  = 10
	typeInt64   = 11
	typeFloat64 = 12
)

// ggmlF32 is GGML_TYPE_F32.
const ggmlF32 = 0

// Tensor is one float32 tensor. Dims are in GGML order: Dims[0] is the
// innermost (contiguous) dimension, so a matrix of R rows of C columns is
// {C, R} and Data holds R×C values, row by row.
type Tensor struct {
	Name string
	Dims []uint64
	Data []float32
}

// File is a model to write: metadata (string, uint32, int32, float32, bool,
// []string, []int32, []float32 values) and tensors.
type File struct {
	Meta    map[string]any
	Tensors []Tensor
}

// Write writes f to w. Metadata is written in key order, so the same File
// always gives the same bytes.
func (f *File) Write(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	e := &encoder{w: bw}
	e.raw([]byte(Magic))
	e.u32(Version)
	e.u64(uint64(len(f.Tensors)))
	e.u64(uint64(len(f.Meta)))
	keys := make([]string, 0, len(f.Meta))
	for k := range f.Meta {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		e.str(k)
		if err := e.value(f.Meta[k]); err != nil {
			return fmt.Errorf("gguf: %s: %w", k, err)
		}
	}
	var off uint64
	for _, t := range f.Tensors {
		n := uint64(1)
		for _, d := range t.Dims {
			n *= d
		}
		if n != uint64(len(t.Data)) {
			return fmt.Errorf("gguf: tensor %s: dims %v hold %d values, data has %d", t.Name, t.Dims, n, len(t.Data))
		}
		e.str(t.Name)
		e.u32(uint32(len(t.Dims)))
		for _, d := range t.Dims {
			e.u64(d)
		}
		e.u32(ggmlF32)
		e.u64(off)
		off = align(off + 4*n)
	}
	e.pad()
	for _, t := range f.Tensors {
		buf := make([]byte, 4*len(t.Data))
		for i, v := range t.Data {
			binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(v))
		}
		e.raw(buf)
		e.pad()
	}
	if e.err != nil {
		return e.err
	}
	return bw.Flush()
}

func align(n uint64) uint64 { return (n + Alignment - 1) / Alignment * Alignment }

type encoder struct {
	w   *bufio.Writer
	n   uint64
	err error
}

func (e *encoder) raw(b []byte) {
	if e.err != nil {
		return
	}
	var n int
	n, e.err = e.w.Write(b)
	e.n += uint64(n)
}

func (e *encoder) pad() {
	if p := align(e.n) - e.n; p > 0 {
		e.raw(make([]byte, p))
	}
}

func (e *encoder) u32(v uint32) { e.raw(binary.LittleEndian.AppendUint32(nil, v)) }
func (e *encoder) u64(v uint64) { e.raw(binary.LittleEndian.AppendUint64(nil, v)) }
func (e *encoder) str(s string) { e.u64(uint64(len(s))); e.raw([]byte(s)) }

func (e *encoder) value(v any) error {
	switch v := v.(type) {
	case string:
		e.u32(typeString)
		e.str(v)
	case uint32:
		e.u32(typeUint32)
		e.u32(v)
	case int32:
		e.u32(typeInt32)
		e.u32(uint32(v))
	case float32:
		e.u32(typeFloat32)
		e.u32(math.Float32bits(v))
	case bool:
		e.u32(typeBool)
		if v {
			e.raw([]byte{1})
		} else {
			e.raw([]byte{0})
		}
	case []string:
		e.u32(typeArray)
		e.u32(typeString)
		e.u64(uint64(len(v)))
		for _, s := range v {
			e.str(s)
		}
	case []int32:
		e.u32(typeArray)
		e.u32(typeInt32)
		e.u64(uint64(len(v)))
		for _, x := range v {
			e.u32(uint32(x))
		}
	case []float32:
		e.u32(typeArray)
		e.u32(typeFloat32)
		e.u64(uint64(len(v)))
		for _, x := range v {
			e.u32(math.Float32bits(x))
		}
	default:
		return fmt.Errorf("unsupported value type %T", v)
	}
	return nil
}

// Info is what ReadInfo learns from a file's header.
type Info struct {
	Version uint32
	Tensors uint64
	// Meta holds the scalar metadata (strings, numbers, bools); arrays are
	// recorded by their length only, under the key with a "#len" suffix.
	Meta map[string]any
}

// Architecture is general.architecture ("llama", "qwen3"…).
func (i Info) Architecture() string { s, _ := i.Meta["general.architecture"].(string); return s }

// ContextLength is {arch}.context_length, the context the model was trained
// for (0 when the file does not say).
func (i Info) ContextLength() int {
	switch v := i.Meta[i.Architecture()+".context_length"].(type) {
	case uint32:
		return int(v)
	case uint64:
		return int(v)
	case int32:
		return int(v)
	}
	return 0
}

// ErrNotGGUF: the file does not start with GGUF's magic.
var ErrNotGGUF = errors.New("not a GGUF file")

// ReadInfo reads the header and metadata of the GGUF file at path.
func ReadInfo(path string) (Info, error) {
	f, err := os.Open(path)
	if err != nil {
		return Info{}, err
	}
	defer f.Close()
	return Read(f)
}

// Read reads the header and metadata of a GGUF stream.
func Read(r io.Reader) (Info, error) {
	d := &decoder{r: bufio.NewReaderSize(r, 1<<16)}
	magic := d.bytes(4)
	if d.err != nil || string(magic) != Magic {
		return Info{}, ErrNotGGUF
	}
	info := Info{Version: d.u32(), Meta: map[string]any{}}
	if info.Version < 2 || info.Version > 3 {
		return Info{}, fmt.Errorf("GGUF version %d is not supported (2 and 3 are)", info.Version)
	}
	info.Tensors = d.u64()
	n := d.u64()
	if n > 1<<20 {
		return Info{}, fmt.Errorf("gguf: %d metadata keys: the file is damaged", n)
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		k := d.str()
		t := d.u32()
		if t == typeArray {
			et, cnt := d.u32(), d.u64()
			info.Meta[k+"#len"] = cnt
			for j := uint64(0); j < cnt && d.err == nil; j++ {
				d.skip(et)
			}
			continue
		}
		info.Meta[k] = d.scalar(t)
	}
	if d.err != nil {
		return Info{}, fmt.Errorf("gguf: reading metadata: %w", d.err)
	}
	return info, nil
}

type decoder struct {
	r   *bufio.Reader
	err error
}

func (d *decoder) bytes(n uint64) []byte {
	if d.err != nil {
		return nil
	}
	if n > 1<<30 {
		d.err = errors.New("a value is implausibly long: the file is damaged")
		return nil
	}
	b := make([]byte, n)
	_, d.err = io.ReadFull(d.r, b)
	return b
}

func (d *decoder) u32() uint32 {
	b := d.bytes(4)
	if d.err != nil {
		return 0
	}
	return binary.LittleEndian.Uint32(b)
}

func (d *decoder) u64() uint64 {
	b := d.bytes(8)
	if d.err != nil {
		return 0
	}
	return binary.LittleEndian.Uint64(b)
}

func (d *decoder) str() string { return string(d.bytes(d.u64())) }

func (d *decoder) scalar(t uint32) any {
	switch t {
	case typeUint8, typeInt8, typeBool:
		b := d.bytes(1)
		if d.err != nil {
			return nil
		}
		if t == typeBool {
			return b[0] != 0
		}
		return uint32(b[0])
	case typeUint16, typeInt16:
		b := d.bytes(2)
		if d.err != nil {
			return nil
		}
		return uint32(binary.LittleEndian.Uint16(b))
	case typeUint32:
		return d.u32()
	case typeInt32:
		return int32(d.u32())
	case typeFloat32:
		return math.Float32frombits(d.u32())
	case typeUint64:
		return d.u64()
	case typeInt64:
		return int64(d.u64())
	case typeFloat64:
		return math.Float64frombits(d.u64())
	case typeString:
		return d.str()
	}
	if d.err == nil {
		d.err = fmt.Errorf("unknown value type %d", t)
	}
	return nil
}

func (d *decoder) skip(t uint32) {
	if t == typeArray {
		d.err = errors.New("nested arrays are not supported")
		return
	}
	d.scalar(t)
}
