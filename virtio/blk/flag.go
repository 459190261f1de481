package blk

import (
	"errors"
	"fmt"
	"strings"
)

// ParseDiskFlag parses the value of govmm boot's --disk option,
// PATH[,ro]: an image path and, after the last comma, an option, "ro" for
// a read-only disk or "rw" for the default read-write one. A path that
// contains a comma must therefore be followed by an option ("a,b.img,rw").
func ParseDiskFlag(s string) (path string, ro bool, err error) {
	path = s
	if i := strings.LastIndexByte(s, ','); i >= 0 {
		path = s[:i]
		switch opt := s[i+1:]; opt {
		case "ro":
			ro = true
		case "rw":
		default:
			return "", false, fmt.Errorf("--disk %q: unknown option %q: want PATH[,ro] (a path with a comma needs ,rw or ,ro after it)", s, opt)
		}
	}
	if path == "" {
		return "", false, errors.New("--disk: empty path: want PATH[,ro]")
	}
	return path, ro, nil
}
