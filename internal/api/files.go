package api

import (
	"net/http"

	"github.com/thon-dev/thon/internal/configfiles"
	"github.com/thon-dev/thon/wire"
)

func (s *Server) listFiles(w http.ResponseWriter, r *http.Request) error {
	fs, err := s.files.List(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, each(fs, toConfigFile))
	return nil
}

func (s *Server) getFile(w http.ResponseWriter, r *http.Request) error {
	f, err := s.files.Get(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toConfigFile(f))
	return nil
}

func (s *Server) putFile(w http.ResponseWriter, r *http.Request) error {
	var req wire.FileRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	n := r.PathValue("name")
	effect, err := s.files.Put(r.Context(), actor(r), n, []byte(req.Content))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, wire.FileSaved{Name: n, Effect: effect})
	return nil
}

func (s *Server) deleteFile(w http.ResponseWriter, r *http.Request) error {
	n := r.PathValue("name")
	effect, err := s.files.Delete(r.Context(), actor(r), n)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, wire.FileSaved{Name: n, Effect: effect})
	return nil
}

// fileProblems is an invalid file's answer: what is wrong, at its lines.
func fileProblems(e *configfiles.InvalidError) wire.Error {
	b := wire.Error{Error: e.Name + " was not saved", Hint: "fix the problems and send it again"}
	for _, p := range e.Problems {
		b.Problems = append(b.Problems, wire.Problem{File: e.Name, Line: p.Line, Msg: p.Msg})
	}
	return b
}
