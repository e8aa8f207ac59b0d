// Package testmodel makes THON's test model: a GGUF file of a few MB that
// llama.cpp's llama-server loads like any chat model and that answers every
// chat with the same sentence, Answer. Tests assert on it, and scripts/demo
// gives participants an AI that answers on a machine with no model at all.
//
// The model is a one-layer llama whose attention and feed-forward outputs
// are zero, so the last position's hidden state is its token's embedding.
// The embeddings and the output matrix are set by hand so that each token
// of Answer is followed by the next, the last by the end-of-turn token, and
// every other token by Answer's first: from any prompt, the greedy answer
// (and, with logits this sharp, any sampled one) is Answer. With
// ignore_eos it repeats Answer for as long as asked, for load tests.
//
// Its vocabulary is byte-level BPE (merges.txt, learned from THON's own
// docs and source), about 3.5 characters a token on prose and code, so a
// coding agent's 40,000-character system prompt is 12,000 tokens, not
// 55,000; and its trained context is 262,144 tokens, so llama-server gives
// each slot all the context it is asked for.
package testmodel

//go:generate go run ./internal/train -o merges.txt

import (
	_ "embed"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strings"

	"github.com/thon-dev/thon/internal/llm/gguf"
)

// Answer is what the model says to every chat.
const Answer = "Hello from THON's test model: your assistant reaches the event LLM."

// Name is the model's name (general.name) and the id THON serves it as.
const Name = "thon-test"

// Merges is how many merges merges.txt holds (the vocabulary is the 256
// bytes, the merged pieces and three control tokens).
const Merges = 8000

// ContextLength is the context the model says it was trained for.
const ContextLength = 262144

// Sizes of the network.
const (
	embd = 64 // hidden size: one dimension per Answer token, one for "any other", the rest features
	ff   = 32 // feed-forward size (its output is zero)
)

// Control tokens. <|im_end|> ends a turn (end of generation).
const (
	tokEndOfText = "<|endoftext|>"
	tokImStart   = "<|im_start|>"
	tokImEnd     = "<|im_end|>"
)

//go:embed merges.txt
var mergesTxt string

// ChatTemplate is the model's chat template (ChatML, with tools in the
// Hermes style that llama.cpp recognizes, so a request with tools is
// answered as text unless the model writes a <tool_call>).
const ChatTemplate = `{%- macro text(content) -%}
{%- if content is string -%}{{ content }}
{%- elif content -%}{%- for part in content -%}{%- if part.text is defined -%}{{ part.text }}{%- endif -%}{%- endfor -%}
{%- endif -%}
{%- endmacro -%}
{%- if tools -%}
{{- '<|im_start|>system\n' -}}
{%- if messages and messages[0].role == 'system' -%}{{- text(messages[0].content) + '\n\n' -}}{%- endif -%}
{{- '# Tools\n\nYou may call one or more functions to assist with the user query.\n\n<tools>' -}}
{%- for tool in tools -%}{{- '\n' + (tool | tojson) -}}{%- endfor -%}
{{- '\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n' -}}
{%- endif -%}
{%- for message in messages -%}
{%- if message.role == 'system' and tools and loop.first -%}
{%- elif message.role == 'tool' -%}
{{- '<|im_start|>user\n<tool_response>\n' + text(message.content) + '\n</tool_response><|im_end|>\n' -}}
{%- else -%}
{{- '<|im_start|>' + message.role + '\n' + text(message.content) -}}
{%- if message.tool_calls -%}{%- for call in message.tool_calls -%}
{{- '\n<tool_call>\n{"name": "' + call.function.name + '", "arguments": ' + (call.function.arguments if call.function.arguments is string else (call.function.arguments | tojson)) + '}\n</tool_call>' -}}
{%- endfor -%}{%- endif -%}
{{- '<|im_end|>\n' -}}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\n' -}}{%- endif -%}`

// Vocab is the model's tokens, in id order, in the byte-level alphabet.
func Vocab() (tokens []string, merges []string) {
	seen := map[string]bool{}
	for b := 0; b < 256; b++ {
		t := string(byteRunes[b])
		tokens = append(tokens, t)
		seen[t] = true
	}
	for _, line := range strings.Split(mergesTxt, "\n") {
		if strings.Count(line, " ") != 1 {
			continue // the header (a merge has exactly one space)
		}
		a, b, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		merges = append(merges, line)
		if t := a + b; !seen[t] {
			tokens = append(tokens, t)
			seen[t] = true
		}
	}
	return append(tokens, tokEndOfText, tokImStart, tokImEnd), merges
}

// pieces splits Answer into vocabulary tokens: each word as one token when
// the vocabulary has it, else its longest known pieces.
func pieces(ids map[string]int, text string) ([]int, error) {
	var out []int
	for _, w := range preTokenize(text) {
		s := []rune(encodeBytes(w))
		for len(s) > 0 {
			n := len(s)
			for ; n > 0; n-- {
				if _, ok := ids[string(s[:n])]; ok {
					break
				}
			}
			out = append(out, ids[string(s[:n])])
			s = s[n:]
		}
	}
	seen := map[int]bool{}
	for _, id := range out {
		if seen[id] {
			return nil, fmt.Errorf("the answer uses token %d twice: pick words whose tokens differ", id)
		}
		seen[id] = true
	}
	return out, nil
}

// Build makes the model.
func Build() (*gguf.File, error) {
	tokens, merges := Vocab()
	ids := make(map[string]int, len(tokens))
	for i, t := range tokens {
		ids[t] = i
	}
	seq, err := pieces(ids, Answer)
	if err != nil {
		return nil, err
	}
	k := len(seq)
	if k+1 >= embd {
		return nil, fmt.Errorf("the answer has %d tokens; the model holds at most %d", k, embd-2)
	}
	nv := len(tokens)
	eos := ids[tokImEnd]
	types := make([]int32, nv)
	for i := range types {
		types[i] = 1 // normal
	}
	for _, t := range []string{tokEndOfText, tokImStart, tokImEnd} {
		types[ids[t]] = 3 // control
	}

	// Embeddings: Answer's i-th token is dimension i, every other token is
	// dimension k ("other"); the remaining dimensions are small features
	// hashed from the token, so that embeddings of different texts differ.
	pos := map[int]int{}
	for i, id := range seq {
		pos[id] = i
	}
	emb := make([]float32, nv*embd)
	for t := 0; t < nv; t++ {
		row := emb[t*embd : (t+1)*embd]
		if i, ok := pos[t]; ok {
			row[i] = 1
		} else {
			row[k] = 1
		}
		h := fnv.New64a()
		h.Write([]byte(tokens[t]))
		x := h.Sum64()
		for d := k + 1; d < embd; d++ {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			row[d] = float32(int64(x%2001)-1000) / 20000 // ±0.05
		}
	}
	// Output: a logit of about 5 × 7.5 ≈ 37 for the next token, 0 for the rest.
	const c = 5
	out := make([]float32, nv*embd)
	set := func(tok, dim int, v float32) { out[tok*embd+dim] = v }
	for i := 0; i+1 < k; i++ {
		set(seq[i+1], i, c)
	}
	set(eos, k-1, c)      // the end of Answer ends the turn…
	set(seq[0], k-1, c/2) // …or, with ignore_eos, starts it again
	set(seq[0], k, c)     // any other token starts Answer
	ones := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = 1
		}
		return v
	}
	zeros := func(n int) []float32 { return make([]float32, n) }
	f := &gguf.File{
		Meta: map[string]any{
			"general.architecture":                   "llama",
			"general.name":                           Name,
			"general.description":                    "THON's test model: answers every chat with one sentence",
			"general.file_type":                      uint32(0), // all F32
			"llama.context_length":                   uint32(ContextLength),
			"llama.embedding_length":                 uint32(embd),
			"llama.block_count":                      uint32(1),
			"llama.feed_forward_length":              uint32(ff),
			"llama.attention.head_count":             uint32(1),
			"llama.attention.head_count_kv":          uint32(1),
			"llama.attention.layer_norm_rms_epsilon": float32(1e-5),
			"llama.rope.dimension_count":             uint32(embd),
			"llama.rope.freq_base":                   float32(10000),
			"llama.vocab_size":                       uint32(nv),
			"tokenizer.ggml.model":                   "gpt2",
			"tokenizer.ggml.pre":                     "gpt-2",
			"tokenizer.ggml.tokens":                  tokens,
			"tokenizer.ggml.token_type":              types,
			"tokenizer.ggml.merges":                  merges,
			"tokenizer.ggml.bos_token_id":            uint32(ids[tokEndOfText]),
			"tokenizer.ggml.eos_token_id":            uint32(eos),
			"tokenizer.ggml.padding_token_id":        uint32(ids[tokEndOfText]),
			"tokenizer.ggml.add_bos_token":           false,
			"tokenizer.chat_template":                ChatTemplate,
		},
		Tensors: []gguf.Tensor{
			{Name: "token_embd.weight", Dims: []uint64{embd, uint64(nv)}, Data: emb},
			{Name: "output_norm.weight", Dims: []uint64{embd}, Data: ones(embd)},
			{Name: "output.weight", Dims: []uint64{embd, uint64(nv)}, Data: out},
			{Name: "blk.0.attn_norm.weight", Dims: []uint64{embd}, Data: ones(embd)},
			{Name: "blk.0.attn_q.weight", Dims: []uint64{embd, embd}, Data: zeros(embd * embd)},
			{Name: "blk.0.attn_k.weight", Dims: []uint64{embd, embd}, Data: zeros(embd * embd)},
			{Name: "blk.0.attn_v.weight", Dims: []uint64{embd, embd}, Data: zeros(embd * embd)},
			{Name: "blk.0.attn_output.weight", Dims: []uint64{embd, embd}, Data: zeros(embd * embd)},
			{Name: "blk.0.ffn_norm.weight", Dims: []uint64{embd}, Data: ones(embd)},
			{Name: "blk.0.ffn_gate.weight", Dims: []uint64{embd, ff}, Data: zeros(embd * ff)},
			{Name: "blk.0.ffn_up.weight", Dims: []uint64{embd, ff}, Data: zeros(embd * ff)},
			{Name: "blk.0.ffn_down.weight", Dims: []uint64{ff, embd}, Data: zeros(ff * embd)},
		},
	}
	return f, nil
}

// WriteFile writes the model to path (atomically: a reader never sees half
// a model).
func WriteFile(path string) error {
	f, err := Build()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".thon-test-*.gguf")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := f.Write(tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("write the test model: %w", err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
