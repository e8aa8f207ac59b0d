package imagebuild

import (
	"context"
	"fmt"
	"strings"
)

// officialImage is the FROM of deploy/sandbox/Dockerfile.
func officialImage() string { return "codercom/code-server:" + pinnedVersion() }

// buildOnline builds deploy/sandbox/Dockerfile. online=false (and no error)
// means the official image is neither present nor pullable: the caller
// builds offline instead.
func buildOnline(ctx context.Context, eng *engine, opts Options, exts []extension, progress Progress) (res Result, online bool, err error) {
	const total = 3
	files := onlineContext(exts)
	key := onlineKey(files, opts.ThonVersion)
	res = Result{Image: opts.Tag, CodeServerVersion: pinnedVersion(), Mode: ModeOnline}

	progress("check the image "+opts.Tag, 0, total)
	old, haveOld, err := eng.inspect(ctx, opts.Tag)
	if err != nil {
		return Result{}, false, err
	}
	if !opts.Rebuild && haveOld && old.Labels[LabelKey] == key {
		progress("image "+opts.Tag+" is up to date", total, total)
		res.ID, res.Size, res.Cached = old.ID, old.Size, true
		return res, true, nil
	}

	base := officialImage()
	progress("pull "+base, 1, total)
	if _, ok, err := eng.inspect(ctx, base); err != nil {
		return Result{}, false, err
	} else if !ok {
		if err := eng.pull(ctx, base, opts.Log); err != nil {
			if ctx.Err() != nil {
				return Result{}, false, ctx.Err()
			}
			fmt.Fprintf(opts.Log, "pull %s: %v\nno container registry: building offline from the Debian mirror and npm\n",
				base, strings.TrimSpace(err.Error()))
			return Result{}, false, nil
		}
	}

	progress("build "+opts.Tag+" from "+base, 2, total)
	labels := map[string]string{LabelKey: key}
	args := map[string]string{"THON_VERSION": opts.ThonVersion}
	if err := eng.build(ctx, files, []string{"thon-entrypoint.sh", "install-extensions.sh", "offline/provision.sh"}, opts.Tag, args, labels, opts.Log); err != nil {
		return Result{}, false, err
	}
	info, ok, err := eng.inspect(ctx, opts.Tag)
	if err != nil {
		return Result{}, false, err
	}
	if !ok {
		return Result{}, false, fmt.Errorf("build %s: the engine has no such image afterwards", opts.Tag)
	}
	if haveOld && old.ID != info.ID {
		removePrevious(ctx, eng, old.ID, opts.Log)
	}
	progress("built "+opts.Tag, total, total)
	res.ID, res.Size = info.ID, info.Size
	return res, true, nil
}
