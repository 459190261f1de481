package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// parseSize reads a size such as "256M", "1G", "512MiB" or "4096K". Units
// are binary (K = 1024). A bare number means MiB, as with QEMU's -m.
func parseSize(s string) (uint64, error) {
	orig := s
	s = strings.TrimSpace(s)
	s = strings.TrimSuffix(strings.TrimSuffix(s, "iB"), "B")
	if s == "" {
		return 0, fmt.Errorf("invalid size %q: want a size like 256M or 1G", orig)
	}
	shift := uint(20) // bare numbers are MiB
	switch unit := s[len(s)-1]; unit {
	case 'k', 'K':
		shift = 10
	case 'm', 'M':
		shift = 20
	case 'g', 'G':
		shift = 30
	case 't', 'T':
		shift = 40
	default:
		if unit < '0' || unit > '9' {
			return 0, fmt.Errorf("invalid size %q: unknown unit %q (use K, M, G or T)", orig, string(unit))
		}
		s += "M"
	}
	n, err := strconv.ParseUint(s[:len(s)-1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid size %q: want a size like 256M or 1G", orig)
	}
	if n > math.MaxUint64>>shift {
		return 0, fmt.Errorf("invalid size %q: too large", orig)
	}
	return n << shift, nil
}
