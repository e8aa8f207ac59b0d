package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/thon-dev/thon/internal/llm"
	"github.com/thon-dev/thon/wire"
)

// LLM is the LLM service as the API sees it.
type LLM interface {
	Status(ctx context.Context) llm.Status
	Models(ctx context.Context, all bool) ([]llm.Model, error)
	Pull(ctx context.Context, actor, model string, progress func(model string, p llm.PullProgress)) error
	Load(ctx context.Context, actor, model string) ([]llm.Applied, error)
	Unload(ctx context.Context, actor, model string) error
	Plan(ctx context.Context) (llm.Plan, error)
	Apply(ctx context.Context, actor string) ([]llm.Applied, error)
}

var errNoLLM = errors.New("the LLM is off: set llm.enabled: true in thon.yaml and run thon run")

// needLLM answers 409 when there is no LLM service.
func (s *Server) needLLM(h handler) handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		if s.llm == nil {
			return errNoLLM
		}
		return h(w, r)
	}
}

func (s *Server) llmStatus(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, toLLMStatus(s.llm.Status(r.Context())))
	return nil
}

func (s *Server) llmModels(w http.ResponseWriter, r *http.Request) error {
	all, err := boolQuery(r, "all")
	if err != nil {
		return err
	}
	ms, err := s.llm.Models(r.Context(), all)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, each(ms, toLLMModel))
	return nil
}

// modelRequest reads an optional {"model": …} body.
func modelRequest(r *http.Request) (string, error) {
	var req wire.ModelRequest
	if r.ContentLength == 0 {
		return "", nil
	}
	if err := decode(r, &req); err != nil {
		return "", err
	}
	if len(req.Model) > 256 {
		return "", badRequestf("model name is longer than 256 characters")
	}
	return req.Model, nil
}

func (s *Server) llmPull(w http.ResponseWriter, r *http.Request) error {
	model, err := modelRequest(r)
	if err != nil {
		return err
	}
	// Streamed: downloads take minutes; each line is flushed as it comes.
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	send := func(l wire.PullLine) {
		enc.Encode(l)
		rc.Flush()
	}
	err = s.llm.Pull(r.Context(), actor(r), model, func(m string, p llm.PullProgress) {
		wp := toPullProgress(p)
		send(wire.PullLine{Model: m, Progress: &wp})
	})
	if err != nil {
		send(wire.PullLine{Error: err.Error()})
		return nil
	}
	send(wire.PullLine{Done: true})
	return nil
}

func (s *Server) llmLoad(w http.ResponseWriter, r *http.Request) error {
	model, err := modelRequest(r)
	if err != nil {
		return err
	}
	res, err := s.llm.Load(detached(r), actor(r), model)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, each(res, toApplied))
	return nil
}

func (s *Server) llmUnload(w http.ResponseWriter, r *http.Request) error {
	model, err := modelRequest(r)
	if err != nil {
		return err
	}
	if err := s.llm.Unload(r.Context(), actor(r), model); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) llmPlan(w http.ResponseWriter, r *http.Request) error {
	p, err := s.llm.Plan(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toScalePlan(p))
	return nil
}

func (s *Server) llmApply(w http.ResponseWriter, r *http.Request) error {
	res, err := s.llm.Apply(detached(r), actor(r))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, each(res, toApplied))
	return nil
}

// llmError turns the LLM server's errors into answers: the server's own
// 404 stays a 404, an unsupported operation is a conflict with the
// settings, anything else is a bad gateway.
func llmError(w http.ResponseWriter, err error) bool {
	var ae *llm.APIError
	switch {
	case errors.Is(err, llm.ErrDisabled):
		writeError(w, http.StatusConflict, err.Error(), "")
	case errors.Is(err, llm.ErrUnsupported):
		writeError(w, http.StatusConflict, err.Error(), "set llm.backend: lemonade to manage the server from THON")
	case errors.As(err, &ae) && ae.Status == http.StatusNotFound:
		writeError(w, http.StatusNotFound, err.Error(), "thon llm models --all lists what the server knows")
	case errors.As(err, &ae), errors.Is(err, llm.ErrUnreachable), errors.Is(err, llm.ErrUnauthorized):
		writeError(w, http.StatusBadGateway, err.Error(), "")
	default:
		return false
	}
	return true
}
