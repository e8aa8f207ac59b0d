package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/moby/moby/client"

	"github.com/thon-dev/thon/internal/sandbox"
)

// writeFiles copies spec.Files into a created (not yet started) container
// through the engine's archive API, with their owners and modes.
func (r *Runtime) writeFiles(ctx context.Context, id string, files []sandbox.File) error {
	if len(files) == 0 {
		return nil
	}
	archive, err := filesTar(files)
	if err != nil {
		return err
	}
	if _, err := r.cli.CopyToContainer(ctx, id, client.CopyToContainerOptions{DestinationPath: "/", Content: bytes.NewReader(archive)}); err != nil {
		return fmt.Errorf("write %d files into the sandbox: %w", len(files), err)
	}
	return nil
}

// filesTar builds the archive: each file preceded by the directories inside
// a home directory that lead to it, owned by the file's owner.
func filesTar(files []sandbox.File) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	seen := map[string]bool{}
	mtime := time.Now()
	for _, f := range files {
		for _, d := range sandbox.OwnedDirs(f.Path) {
			if seen[d] {
				continue
			}
			seen[d] = true
			if err := tw.WriteHeader(&tar.Header{
				Typeflag: tar.TypeDir, Name: strings.TrimPrefix(d, "/") + "/", Mode: 0o755,
				Uid: f.UID, Gid: f.GID, ModTime: mtime, Format: tar.FormatPAX,
			}); err != nil {
				return nil, err
			}
		}
		if err := tw.WriteHeader(&tar.Header{
			Typeflag: tar.TypeReg, Name: strings.TrimPrefix(f.Path, "/"), Mode: f.Mode, Size: int64(len(f.Data)),
			Uid: f.UID, Gid: f.GID, ModTime: mtime, Format: tar.FormatPAX,
		}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.Data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
