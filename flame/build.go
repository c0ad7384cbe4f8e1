package flame

import (
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"os"
	"runtime/debug"
	"sync"
)

// buildID identifies this program's build: the Go build ID of the running
// executable (read from its ELF note, via /proc/self/exe so that a binary
// replaced on disk is noticed), else a hash of the embedded build info.
var buildID = sync.OnceValue(func() string {
	for _, path := range []string{"/proc/self/exe", executable()} {
		if id := goBuildID(path); id != "" {
			return "go:" + id
		}
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		sum := sha256.Sum256([]byte(bi.String()))
		return "info:" + hex.EncodeToString(sum[:12])
	}
	return "unknown"
})

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
	if s == nil || s.Size > 4096 {
		return ""
	}
	d, err := s.Data()
	if err != nil || len(d) < 16 {
		return ""
	}
	nameLen := f.ByteOrder.Uint32(d[0:4])
	descLen := f.ByteOrder.Uint32(d[4:8])
	if nameLen != 4 || string(d[12:15]) != "Go\x00" || uint64(16)+uint64(descLen) > uint64(len(d)) {
		return ""
	}
	return string(d[16 : 16+descLen])
}
