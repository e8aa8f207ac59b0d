package api

import (
	"net/http"
	"strconv"
)

// getDoctor runs thon doctor's checks in the daemon: GET /api/v1/doctor
// (?probe=false: measure only sandboxes that run, never start one).
func (s *Server) getDoctor(w http.ResponseWriter, r *http.Request) error {
	if s.doctor == nil {
		writeError(w, http.StatusNotImplemented, "this daemon does not run the readiness checks", "run thon doctor on the daemon's machine")
		return nil
	}
	probe := true
	if v := r.URL.Query().Get("probe"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return badRequestf("probe=%q: use true or false", v)
		}
		probe = b
	}
	writeJSON(w, http.StatusOK, s.doctor(r.Context(), probe).Wire())
	return nil
}
