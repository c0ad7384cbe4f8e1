package goflame_test

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Every Go snippet in the README compiles, because each one is the text of
// a program under examples/ or kube/examples/ (which the build and its
// tests compile): a snippet that drifts from its program fails here.
func TestReadmeGoSnippetsLiveInExamples(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	var sources [][]byte
	for _, dir := range []string{"examples", "kube/examples"} {
		err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.HasSuffix(path, ".go") {
				b, err := os.ReadFile(path)
				if err != nil {
					return err
				}
				sources = append(sources, normalize(b))
			}
			return err
		})
		require.NoError(t, err)
	}
	blocks := regexp.MustCompile("(?s)```go\n(.*?)```").FindAllSubmatch(readme, -1)
	require.NotEmpty(t, blocks, "no Go snippets in README.md")
	for i, b := range blocks {
		snippet := normalize(b[1])
		found := false
		for _, src := range sources {
			if bytes.Contains(src, snippet) {
				found = true
				break
			}
		}
		assert.True(t, found, "README Go snippet %d is not the text of any program under examples/ or kube/examples/:\n%s", i+1, b[1])
	}
}

// normalize drops blank lines and each line's leading and trailing space,
// so that a snippet may leave out the lines between the parts it shows,
// and show a part of a function at the indentation of its own.
func normalize(b []byte) []byte {
	var out bytes.Buffer
	for _, line := range strings.Split(string(b), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			out.WriteString(line)
			out.WriteByte('\n')
		}
	}
	return out.Bytes()
}
