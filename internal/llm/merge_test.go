package llm

import (
	"reflect"
	"testing"
)

func TestMerge(t *testing.T) {
	base := map[string]any{
		"theme": "dark",
		"provider": map[string]any{
			"thon":  map[string]any{"name": "old", "options": map[string]any{"timeout": 5}},
			"other": map[string]any{"name": "cloud"},
		},
		"models": []any{
			map[string]any{"name": "cloud", "model": "gpt"},
			map[string]any{"name": "THON chat", "model": "old", "temperature": 0.2},
		},
		"list": []any{"a", "b"},
	}
	over := map[string]any{
		"provider": map[string]any{"thon": map[string]any{"name": "THON", "options": map[string]any{"apiKey": "k"}}},
		"models":   []any{map[string]any{"name": "THON chat", "model": "new"}},
		"list":     []any{"c"},
	}
	got := merge(base, over)
	want := map[string]any{
		"theme": "dark",
		"provider": map[string]any{
			"thon":  map[string]any{"name": "THON", "options": map[string]any{"timeout": 5, "apiKey": "k"}},
			"other": map[string]any{"name": "cloud"},
		},
		"models": []any{
			map[string]any{"name": "THON chat", "model": "new", "temperature": 0.2},
			map[string]any{"name": "cloud", "model": "gpt"},
		},
		"list": []any{"c"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("merge =\n%#v\nwant\n%#v", got, want)
	}
	if base["theme"] != "dark" || len(base["models"].([]any)) != 2 || base["models"].([]any)[1].(map[string]any)["model"] != "old" {
		t.Fatalf("merge changed its input: %#v", base)
	}
}
