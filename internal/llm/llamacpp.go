package llm

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// BackendLlamacpp is llama.cpp's llama-server: one model, or several in its
// router mode (--models-preset, --models-dir).
const BackendLlamacpp = "llamacpp"

func (c *Client) llamacpp() bool { return c.backend == BackendLlamacpp }

// LlamaServer is what a llama-server says about itself: in router mode
// every model it knows, loaded or not; otherwise its one model.
type LlamaServer struct {
	Router bool         `json:"router"`
	Build  string       `json:"build,omitempty"` // e.g. b11669-Debian
	Models []LlamaModel `json:"models"`
}

// LlamaModel is one model of a llama-server.
type LlamaModel struct {
	ID string `json:"id"`
	// State is loaded, loading, unloaded or failed (router mode; a single
	// model server's model is always loaded).
	State  string `json:"state"`
	Failed string `json:"failed,omitempty"` // why it failed to load, when the server says
	// CtxTrain is the context the model was trained for.
	CtxTrain int `json:"ctx_train,omitempty"`
	// Args are the arguments the router starts it with.
	Args []string `json:"args,omitempty"`
	// Slots are its parallel slots, when loaded.
	Slots []Slot `json:"slots,omitempty"`
	// Metrics are its /metrics counters, when the server has --metrics.
	Metrics *LlamaMetrics `json:"metrics,omitempty"`
}

// LlamaMetrics are a model's counters from /metrics.
type LlamaMetrics struct {
	PromptTokens       int64   `json:"prompt_tokens"`        // llamacpp:prompt_tokens_total
	PredictedTokens    int64   `json:"predicted_tokens"`     // llamacpp:tokens_predicted_total
	PromptPerSecond    float64 `json:"prompt_per_second"`    // llamacpp:prompt_tokens_seconds
	PredictedPerSecond float64 `json:"predicted_per_second"` // llamacpp:predicted_tokens_seconds
	Processing         int     `json:"requests_processing"`  // llamacpp:requests_processing
	Deferred           int     `json:"requests_deferred"`    // llamacpp:requests_deferred
}

// Llama asks a llama-server for its models, their slots and counters.
func (c *Client) Llama(ctx context.Context) (LlamaServer, error) {
	if !c.llamacpp() {
		return LlamaServer{}, c.need("llama.cpp status")
	}
	var props struct {
		Role  lstr `json:"role"`
		Build lstr `json:"build_info"`
	}
	body, err := c.query(ctx, "/props")
	if err != nil {
		return LlamaServer{}, err
	}
	if err := c.decode(body, "/props", &props); err != nil {
		return LlamaServer{}, err
	}
	s := LlamaServer{Router: props.Role == "router", Build: string(props.Build), Models: []LlamaModel{}}
	if s.Router {
		body, err = c.query(ctx, "/models")
	} else {
		body, err = c.query(ctx, "/v1/models")
	}
	if err != nil {
		return s, err
	}
	var list struct {
		Data []struct {
			ID     lstr `json:"id"`
			Status struct {
				Value  lstr     `json:"value"`
				Args   []string `json:"args"`
				Failed lbool    `json:"failed"`
				Exit   lnum     `json:"exit_code"`
			} `json:"status"`
			ContextLength lnum `json:"context_length"`
			Meta          struct {
				CtxTrain lnum `json:"n_ctx_train"`
			} `json:"meta"`
		} `json:"data"`
	}
	if err := c.decode(body, "/models", &list); err != nil {
		return s, err
	}
	for _, d := range list.Data {
		m := LlamaModel{ID: string(d.ID), State: "loaded", CtxTrain: int(d.Meta.CtxTrain), Args: d.Status.Args}
		if s.Router {
			m.State = string(d.Status.Value)
			m.CtxTrain = int(d.ContextLength)
			if d.Status.Failed {
				m.State = "failed"
				m.Failed = fmt.Sprintf("the model's server exited with code %d", int(d.Status.Exit))
			}
		}
		if m.State == "loaded" {
			q := ""
			if s.Router {
				q = "?model=" + url.QueryEscape(m.ID)
			}
			if m.Slots, err = c.llamaSlots(ctx, "/slots"+q); err != nil {
				m.Slots = nil
			}
			if mt, err := c.llamaMetrics(ctx, "/metrics"+q); err == nil {
				m.Metrics = &mt
			}
		}
		s.Models = append(s.Models, m)
	}
	slices.SortFunc(s.Models, func(a, b LlamaModel) int { return strings.Compare(a.ID, b.ID) })
	return s, nil
}

func (c *Client) llamaSlots(ctx context.Context, path string) ([]Slot, error) {
	body, err := c.query(ctx, path)
	if err != nil {
		return nil, err
	}
	return c.decodeSlots(body, path)
}

// llamaMetrics reads llama-server's Prometheus text.
func (c *Client) llamaMetrics(ctx context.Context, path string) (LlamaMetrics, error) {
	body, err := c.query(ctx, path)
	if err != nil {
		return LlamaMetrics{}, err
	}
	var m LlamaMetrics
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			continue
		}
		switch name {
		case "llamacpp:prompt_tokens_total":
			m.PromptTokens = int64(v)
		case "llamacpp:tokens_predicted_total":
			m.PredictedTokens = int64(v)
		case "llamacpp:prompt_tokens_seconds":
			m.PromptPerSecond = v
		case "llamacpp:predicted_tokens_seconds":
			m.PredictedPerSecond = v
		case "llamacpp:requests_processing":
			m.Processing = int(v)
		case "llamacpp:requests_deferred":
			m.Deferred = int(v)
		}
	}
	return m, nil
}

// LlamaLoad loads a model of a router-mode llama-server.
func (c *Client) LlamaLoad(ctx context.Context, model string) error {
	return c.llamaModels(ctx, "load", model)
}

// LlamaUnload unloads a model of a router-mode llama-server.
func (c *Client) LlamaUnload(ctx context.Context, model string) error {
	return c.llamaModels(ctx, "unload", model)
}

func (c *Client) llamaModels(ctx context.Context, op, model string) error {
	if !c.llamacpp() {
		return c.need(op)
	}
	if err := c.call(ctx, http.MethodPost, "/models/"+op, map[string]string{"model": model}); err != nil {
		return fmt.Errorf("%s %s: %w", op, model, err)
	}
	return nil
}
