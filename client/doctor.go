package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/thon-dev/thon/wire"
)

// DoctorReport is what thon doctor shows.
type DoctorReport = wire.DoctorReport

// Doctor runs the daemon's readiness checks and capacity estimate; with
// probe, a throwaway sandbox is measured when none runs (about 20 s).
func (c *Client) Doctor(ctx context.Context, probe bool) (DoctorReport, error) {
	var out DoctorReport
	return out, c.do(ctx, http.MethodGet, "/api/v1/doctor", url.Values{"probe": {strconv.FormatBool(probe)}}, nil, &out)
}
