// Package llmimage holds the files that make THON's LLM server image, so the
// thon binary can build it (`thon setup llm`, internal/imagebuild) without a
// source checkout:
//
//	provision.sh       provisions a debootstrapped Debian unstable root file system
//	Dockerfile.finish  finishes the imported root file system
package llmimage

import "embed"

// Files is this directory: the paths above, relative to it.
//
//go:embed provision.sh Dockerfile.finish
var Files embed.FS
