package flame

import (
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"io"
	"os"
	"runtime/debug"
	"sync"
)

// buildID identifies this program's build: the Go build ID of the running
// executable (read from its ELF note, via /proc/self/exe so that a binary
// replaced on disk is noticed), else a hash of the embedded build info.
var buildID = sync.OnceValue(func() string { return findBuildID("/proc/self/exe", executable()) })

// findBuildID returns the Go build ID of the first of the executables
// that has one, else a hash of the embedded build info.
func findBuildID(executables ...string) string {
	for _, path := range executables {
		if id := goBuildID(path); id != "" {
			return "go:" + id
		}
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		sum := sha256.Sum256([]byte(bi.String()))
		return "info:" + hex.EncodeToString(sum[:12])
	}
	return "unknown"
}

func executable() string {
	exe, _ := os.Executable()
	return exe
}

// goBuildID reads the Go build ID from an ELF executable's
// .note.go.buildid section, or returns "".
func goBuildID(path string) string {
	if path == "" {
		return ""
	}
	f, err := elf.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	s := f.Section(".note.go.buildid")
	if s == nil {
		return ""
	}
	d, err := io.ReadAll(io.LimitReader(s.Open(), maxBuildIDNote))
	if err != nil {
		return ""
	}
	return parseBuildIDNote(d, f.ByteOrder)
}

// maxBuildIDNote bounds what is read of the note (a Go build ID note is
// about a hundred bytes), whatever a damaged header says.
const maxBuildIDNote = 4096

// parseBuildIDNote reads the ID from a Go build ID note: name size,
// description size and type (4 bytes each), the name "Go\x00\x00", then
// the ID; "" if d is not such a note.
func parseBuildIDNote(d []byte, order binary.ByteOrder) string {
	if len(d) < 16 {
		return ""
	}
	nameLen := order.Uint32(d[0:4])
	descLen := order.Uint32(d[4:8])
	if nameLen != 4 || string(d[12:15]) != "Go\x00" || uint64(16)+uint64(descLen) > uint64(len(d)) {
		return ""
	}
	return string(d[16 : 16+descLen])
}
