package gateway

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// OpenAI error types used in error bodies.
const (
	typeInvalidRequest = "invalid_request_error"
	typeServer         = "server_error"
	typeQuota          = "insufficient_quota"
)

// apiError is one OpenAI-shaped error answer.
type apiError struct {
	status  int
	typ     string
	code    string
	message string
}

type errorBody struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    string  `json:"code"`
	} `json:"error"`
}

// writeError answers with {"error":{"message","type","param","code"}}.
func writeError(w http.ResponseWriter, e apiError) {
	var b errorBody
	b.Error.Message, b.Error.Type, b.Error.Code = e.message, e.typ, e.code
	out, _ := json.Marshal(b)
	out = append(out, '\n')
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["Content-Length"] = []string{strconv.Itoa(len(out))}
	w.WriteHeader(e.status)
	w.Write(out)
}
