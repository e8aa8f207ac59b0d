// Command train learns the test model's vocabulary from THON's own
// documentation and source (English prose, Go, YAML, shell: what coding
// agents' prompts are made of) and writes it as merges.txt.
//
//	go generate ./internal/llm/testmodel
package main

import (
	"flag"
	"fmt"
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/thon-dev/thon/internal/llm/testmodel"
)

func main() {
	root := flag.String("root", "../../..", "the repository to learn from")
	n := flag.Int("merges", testmodel.Merges, "how many merges to learn")
	out := flag.String("o", "merges.txt", "where to write them")
	flag.Parse()
	var files []string
	err := filepath.WalkDir(*root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && p != *root || d.Name() == "bin" || d.Name() == "demo") {
			return filepath.SkipDir
		}
		switch filepath.Ext(p) {
		case ".md", ".go", ".yaml", ".sh", ".json":
			if filepath.Base(p) != "merges.txt" {
				files = append(files, p)
			}
		}
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	slices.Sort(files)
	var text strings.Builder
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			log.Fatal(err)
		}
		text.Write(b)
		text.WriteByte('\n')
	}
	merges := testmodel.Train(text.String(), *n)
	body := "# The test model's vocabulary: byte-level BPE merges learned by internal/train\n" +
		"# from THON's own docs and source (go generate ./internal/llm/testmodel).\n" +
		strings.Join(merges, "\n") + "\n"
	if err := os.WriteFile(*out, []byte(body), 0o644); err != nil {
		log.Fatal(err)
	}
	fmt.Fprintf(os.Stderr, "%d merges from %d files (%d bytes) in %s\n", len(merges), len(files), text.Len(), *out)
}
