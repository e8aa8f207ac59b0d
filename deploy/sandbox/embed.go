// Package sandboximage holds the files that make THON's participant image, so
// the thon binary can build it (`thon setup image`, internal/imagebuild)
// without a source checkout:
//
//	Dockerfile                 online build, FROM the pinned codercom/code-server
//	thon-entrypoint.sh         entrypoint of both images
//	install-extensions.sh      installs the baked-in extensions, in both builds
//	extensions/                .vsix files baked into both images
//	offline/provision.sh       offline build: provisions a debootstrapped Debian
//	                           (the online build runs it too, for the tools)
//	offline/Dockerfile.finish  offline build: finishes the imported root file system
package sandboximage

import "embed"

// Files is this directory: the paths above, relative to it.
//
//go:embed Dockerfile thon-entrypoint.sh install-extensions.sh extensions offline
var Files embed.FS
