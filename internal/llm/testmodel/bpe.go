package testmodel

import (
	"container/heap"
	"slices"
	"strings"
	"unicode"
)

// byteRunes is GPT-2's byte-level alphabet: each byte is written as a
// printable rune in token strings (a space is 'Ġ', a newline 'Ċ'), which is
// what llama.cpp's "gpt2" tokenizer expects.
var byteRunes = func() [256]rune {
	var m [256]rune
	printable := func(b int) bool {
		return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)
	}
	n := 0
	for b := 0; b < 256; b++ {
		if printable(b) {
			m[b] = rune(b)
		} else {
			m[b] = rune(256 + n)
			n++
		}
	}
	return m
}()

// encodeBytes writes s in the byte-level alphabet.
func encodeBytes(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		b.WriteRune(byteRunes[s[i]])
	}
	return b.String()
}

// decodeBytes reverses encodeBytes.
func decodeBytes(s string) string {
	rev := map[rune]byte{}
	for b, r := range byteRunes {
		rev[r] = byte(b)
	}
	var out []byte
	for _, r := range s {
		out = append(out, rev[r])
	}
	return string(out)
}

// preTokenize splits text into words the way GPT-2's pattern does
// ('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+),
// closely enough for training: merges never cross a word boundary.
func preTokenize(text string) []string {
	r := []rune(text)
	var words []string
	class := func(c rune) int {
		switch {
		case unicode.IsLetter(c):
			return 1
		case unicode.IsNumber(c):
			return 2
		case unicode.IsSpace(c):
			return 3
		}
		return 4
	}
	run := func(i, cl int) int {
		for i < len(r) && class(r[i]) == cl {
			i++
		}
		return i
	}
	for i := 0; i < len(r); {
		if r[i] == '\'' && i+1 < len(r) {
			rest := strings.ToLower(string(r[i+1 : min(i+3, len(r))]))
			if n := contraction(rest); n > 0 {
				words = append(words, string(r[i:i+1+n]))
				i += 1 + n
				continue
			}
		}
		start := i
		if r[i] == ' ' && i+1 < len(r) && class(r[i+1]) != 3 {
			i++
		}
		switch cl := class(r[i]); cl {
		case 1, 2, 4:
			i = run(i, cl)
		default: // whitespace: all of it but the last before a word
			j := run(i, 3)
			if j < len(r) && j-i > 1 {
				j--
			}
			i = j
		}
		words = append(words, string(r[start:i]))
	}
	return words
}

func contraction(s string) int {
	for _, c := range []string{"re", "ve", "ll"} {
		if strings.HasPrefix(s, c) {
			return 2
		}
	}
	if s != "" && strings.ContainsRune("stmd", rune(s[0])) {
		return 1
	}
	return 0
}

// Train learns up to n byte-level BPE merges from text, most frequent pair
// first (ties broken by the pair's ids, so the result depends only on the
// text). Each merge is "LEFT RIGHT" in the byte-level alphabet, the format
// of tokenizer.ggml.merges.
func Train(text string, n int) []string {
	counts := map[string]int{}
	for _, w := range preTokenize(text) {
		counts[w]++
	}
	// Symbols: 0..255 are the bytes, then one per merged string.
	strs := make([]string, 256)
	ids := map[string]int32{}
	for b := 0; b < 256; b++ {
		strs[b] = string(byteRunes[b])
		ids[strs[b]] = int32(b)
	}
	type word struct {
		syms []int32
		freq int
	}
	keys := make([]string, 0, len(counts))
	for w := range counts {
		keys = append(keys, w)
	}
	slices.Sort(keys)
	words := make([]word, len(keys))
	for i, w := range keys {
		syms := make([]int32, len(w))
		for j := 0; j < len(w); j++ {
			syms[j] = int32(w[j])
		}
		words[i] = word{syms, counts[w]}
	}
	pk := func(a, b int32) uint64 { return uint64(a)<<32 | uint64(uint32(b)) }
	pairs := map[uint64]int{}
	where := map[uint64]map[int32]struct{}{}
	h := &pairHeap{}
	add := func(wi int32, w word, sign int) {
		for j := 0; j+1 < len(w.syms); j++ {
			p := pk(w.syms[j], w.syms[j+1])
			pairs[p] += sign * w.freq
			if sign > 0 {
				if where[p] == nil {
					where[p] = map[int32]struct{}{}
				}
				where[p][wi] = struct{}{}
			}
			heap.Push(h, pairCount{p, pairs[p]})
		}
	}
	for i, w := range words {
		add(int32(i), w, 1)
	}
	var merges []string
	for len(merges) < n && h.Len() > 0 {
		top := heap.Pop(h).(pairCount)
		if pairs[top.pair] != top.count || top.count < 2 {
			if top.count < 2 && pairs[top.pair] == top.count {
				break
			}
			continue // stale
		}
		a, b := int32(top.pair>>32), int32(uint32(top.pair))
		s := strs[a] + strs[b]
		id, ok := ids[s]
		if !ok {
			id = int32(len(strs))
			strs = append(strs, s)
			ids[s] = id
		}
		merges = append(merges, strs[a]+" "+strs[b])
		wis := make([]int32, 0, len(where[top.pair]))
		for wi := range where[top.pair] {
			wis = append(wis, wi)
		}
		for _, wi := range wis {
			w := words[wi]
			add(wi, w, -1)
			out := w.syms[:0:0]
			for j := 0; j < len(w.syms); j++ {
				if j+1 < len(w.syms) && w.syms[j] == a && w.syms[j+1] == b {
					out = append(out, id)
					j++
				} else {
					out = append(out, w.syms[j])
				}
			}
			w.syms = out
			words[wi] = w
			add(wi, w, 1)
		}
		delete(where, top.pair)
		delete(pairs, top.pair)
	}
	return merges
}

type pairCount struct {
	pair  uint64
	count int
}

type pairHeap []pairCount

func (h pairHeap) Len() int { return len(h) }
func (h pairHeap) Less(i, j int) bool {
	if h[i].count != h[j].count {
		return h[i].count > h[j].count
	}
	return h[i].pair < h[j].pair
}
func (h pairHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *pairHeap) Push(x any)   { *h = append(*h, x.(pairCount)) }
func (h *pairHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
