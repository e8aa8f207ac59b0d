package client

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/thon-dev/thon/wire"
)

// The LLM's types, named here for callers of this package.
type (
	LLMStatus       = wire.LLMStatus
	LoadedModel     = wire.LoadedModel
	SlotSummary     = wire.SlotSummary
	LLMStats        = wire.LLMStats
	ConfiguredModel = wire.ConfiguredModel
	ScalePlan       = wire.ScalePlan
	ModelPlan       = wire.ModelPlan
	LLMServer       = wire.LLMServer
	LLMModel        = wire.LLMModel
	Applied         = wire.Applied
	PullProgress    = wire.PullProgress
)

func modelBody(model string) any {
	if model == "" {
		return nil
	}
	return wire.ModelRequest{Model: model}
}

// LLMStatus is the LLM server's health, models, slots, speed and the scaling plan.
func (c *Client) LLMStatus(ctx context.Context) (LLMStatus, error) {
	var out LLMStatus
	return out, c.do(ctx, http.MethodGet, "/api/v1/llm", nil, nil, &out)
}

// LLMModels lists the server's models; all includes those not downloaded.
func (c *Client) LLMModels(ctx context.Context, all bool) ([]LLMModel, error) {
	var out []LLMModel
	return out, c.do(ctx, http.MethodGet, "/api/v1/llm/models", url.Values{"all": {strconv.FormatBool(all)}}, nil, &out)
}

// LLMPull downloads model ("" the configured ones), reporting progress.
func (c *Client) LLMPull(ctx context.Context, model string, progress func(model string, p PullProgress)) error {
	req, err := c.request(ctx, http.MethodPost, "/api/v1/llm/pull", nil, modelBody(model))
	if err != nil {
		return err
	}
	resp, err := c.send(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var l wire.PullLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return fmt.Errorf("pull: bad line from daemon: %w", err)
		}
		switch {
		case l.Error != "":
			return &Error{StatusCode: http.StatusBadGateway, Message: l.Error}
		case l.Done:
			return nil
		case l.Progress != nil && progress != nil:
			progress(l.Model, *l.Progress)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("pull: %w", err)
	}
	return fmt.Errorf("pull: the daemon closed the stream before the end (see its log)")
}

// LLMLoad loads model ("" the configured ones, sized by the plan).
func (c *Client) LLMLoad(ctx context.Context, model string) ([]Applied, error) {
	var out []Applied
	return out, c.do(ctx, http.MethodPost, "/api/v1/llm/load", nil, modelBody(model), &out)
}

// LLMUnload unloads model ("" every model).
func (c *Client) LLMUnload(ctx context.Context, model string) error {
	return c.do(ctx, http.MethodPost, "/api/v1/llm/unload", nil, modelBody(model), nil)
}

// LLMPlan is the scaling plan for the participants there are now.
func (c *Client) LLMPlan(ctx context.Context) (ScalePlan, error) {
	var out ScalePlan
	return out, c.do(ctx, http.MethodGet, "/api/v1/llm/scale", nil, nil, &out)
}

// LLMApply reloads loaded models whose options differ from the plan.
func (c *Client) LLMApply(ctx context.Context) ([]Applied, error) {
	var out []Applied
	return out, c.do(ctx, http.MethodPost, "/api/v1/llm/scale", nil, nil, &out)
}
