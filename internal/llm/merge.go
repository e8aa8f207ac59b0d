package llm

// merge deep-merges over onto base and returns the result; neither input
// is changed. Maps merge key by key; lists of objects that all have a
// "name" merge by name (over's items first, then base's others); any other
// value from over replaces base's.
func merge(base, over map[string]any) map[string]any {
	out := make(map[string]any, len(base)+len(over))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		out[k] = mergeValue(out[k], v)
	}
	return out
}

func mergeValue(base, over any) any {
	switch o := over.(type) {
	case map[string]any:
		if b, ok := base.(map[string]any); ok {
			return merge(b, o)
		}
	case []any:
		if b, ok := base.([]any); ok {
			if merged, ok := mergeNamed(b, o); ok {
				return merged
			}
		}
	}
	return over
}

// mergeNamed merges two lists of named objects, or says it cannot.
func mergeNamed(base, over []any) ([]any, bool) {
	names := func(l []any) ([]string, bool) {
		out := make([]string, len(l))
		for i, v := range l {
			m, ok := v.(map[string]any)
			if !ok {
				return nil, false
			}
			if out[i], ok = m["name"].(string); !ok {
				return nil, false
			}
		}
		return out, true
	}
	bn, ok1 := names(base)
	on, ok2 := names(over)
	if !ok1 || !ok2 {
		return nil, false
	}
	out := make([]any, 0, len(base)+len(over))
	taken := map[string]int{}
	for i, v := range over {
		taken[on[i]] = len(out)
		out = append(out, v)
	}
	for i, v := range base {
		if j, ok := taken[bn[i]]; ok {
			out[j] = merge(v.(map[string]any), out[j].(map[string]any))
			continue
		}
		out = append(out, v)
	}
	return out, true
}
