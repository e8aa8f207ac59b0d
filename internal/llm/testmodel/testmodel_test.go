package testmodel

import (
	"bytes"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/thon-dev/thon/internal/llm/gguf"
)

// greedy runs the model's last position by hand (the hidden state is the
// token's embedding, RMS-normalized, times the output matrix) and follows
// the highest logit from start for at most n tokens, stopping at <|im_end|>.
func greedy(t *testing.T, f *gguf.File, start, n int, ignoreEOS bool) string {
	t.Helper()
	var emb, out []float32
	for _, ts := range f.Tensors {
		switch ts.Name {
		case "token_embd.weight":
			emb = ts.Data
		case "output.weight":
			out = ts.Data
		}
	}
	tokens := f.Meta["tokenizer.ggml.tokens"].([]string)
	eos := int(f.Meta["tokenizer.ggml.eos_token_id"].(uint32))
	nv := len(tokens)
	var text strings.Builder
	tok := start
	for range n {
		x := emb[tok*embd : (tok+1)*embd]
		var ss float64
		for _, v := range x {
			ss += float64(v) * float64(v)
		}
		scale := 1 / math.Sqrt(ss/embd+1e-5)
		best, second, bestV, secondV := -1, -1, math.Inf(-1), math.Inf(-1)
		for j := range nv {
			var l float64
			for d := range embd {
				l += float64(out[j*embd+d]) * float64(x[d]) * scale
			}
			switch {
			case l > bestV:
				second, secondV = best, bestV
				best, bestV = j, l
			case l > secondV:
				second, secondV = j, l
			}
		}
		if bestV-secondV < 10 && !(best == eos && ignoreEOS) {
			t.Fatalf("after %q the best logit %.1f is only %.1f above the next: sampling would stray", tokens[tok], bestV, bestV-secondV)
		}
		if best == eos {
			if !ignoreEOS {
				return text.String()
			}
			best = second
		}
		text.WriteString(decodeBytes(tokens[best]))
		tok = best
	}
	return text.String()
}

func TestAnswer(t *testing.T) {
	f, err := Build()
	if err != nil {
		t.Fatal(err)
	}
	tokens := f.Meta["tokenizer.ggml.tokens"].([]string)
	ids := map[string]int{}
	for i, tk := range tokens {
		ids[tk] = i
	}
	// Whatever the prompt ends with (but a word of Answer), the answer is Answer, then the turn ends.
	for _, last := range []string{"\n", " a", "assistant", "}", tokImStart} {
		id, ok := ids[encodeBytes(last)]
		if last == tokImStart {
			id, ok = ids[last], true
		}
		if !ok {
			t.Fatalf("%q is not a token", last)
		}
		if got := greedy(t, f, id, 100, false); got != Answer {
			t.Errorf("after %q: %q, want %q", last, got, Answer)
		}
	}
	// With ignore_eos it goes on, Answer after Answer.
	if got := greedy(t, f, ids[encodeBytes("\n")], 45, true); !strings.HasPrefix(got, Answer+Answer) {
		t.Errorf("ignoring the end: %q", got)
	}
}

func TestFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.gguf")
	if err := WriteFile(path); err != nil {
		t.Fatal(err)
	}
	info, err := gguf.ReadInfo(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Architecture() != "llama" || info.ContextLength() != ContextLength || info.Meta["general.name"] != Name {
		t.Fatalf("info: %+v", info.Meta)
	}
	f, _ := Build()
	var a, b bytes.Buffer
	f.Write(&a)
	g, _ := Build()
	g.Write(&b)
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("two builds differ")
	}
	if a.Len() > 8<<20 {
		t.Fatalf("the model is %d bytes; it should stay a few MB", a.Len())
	}
}

func TestVocabulary(t *testing.T) {
	tokens, merges := Vocab()
	if len(merges) != Merges || len(tokens) < 256+Merges/2 {
		t.Fatalf("%d tokens, %d merges", len(tokens), len(merges))
	}
	seen := map[string]bool{}
	for _, tk := range tokens {
		if seen[tk] {
			t.Fatalf("token %q twice", tk)
		}
		seen[tk] = true
	}
	// Every merge joins two tokens into a third: llama.cpp's BPE needs each.
	for _, m := range merges {
		a, b, _ := strings.Cut(m, " ")
		if !seen[a] || !seen[b] || !seen[a+b] {
			t.Fatalf("merge %q: a part or the result is not a token", m)
		}
	}
}

func TestTrain(t *testing.T) {
	merges := Train(strings.Repeat("the cat sat on the mat; the cat ate. ", 50), 10)
	if len(merges) == 0 || merges[0] != "Ġ t" && merges[0] != "a t" {
		t.Fatalf("first merges: %v", merges)
	}
	// The most frequent word ends up one token.
	found := false
	for _, m := range merges {
		a, b, _ := strings.Cut(m, " ")
		if a+b == "Ġthe" || a+b == "Ġcat" {
			found = true
		}
	}
	if !found {
		t.Fatalf("neither ' the' nor ' cat' was learned: %v", merges)
	}
	words := preTokenize("Hello,  world's 42 end\n\tx")
	want := []string{"Hello", ",", " ", " world", "'s", " 42", " end", "\n", "\t", "x"}
	if strings.Join(words, "|") != strings.Join(want, "|") {
		t.Fatalf("preTokenize: %q, want %q", words, want)
	}
}
