package net

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"strings"
	"unicode"
)

// Options configure one network device.
type Options struct {
	// TapName is the host's tap interface (see OpenTap).
	TapName string
	// MAC is the device's Ethernet address, which the driver adopts
	// (VIRTIO_NET_F_MAC, §5.1.4). If nil, it is derived from TapName by
	// MACFromName, so that it stays the same from one run to the next.
	MAC net.HardwareAddr
}

// MAC address bits of the first octet (IEEE 802, "48-bit universal LAN MAC
// addresses"): the I/G bit marks a group (multicast) address, the U/L bit a
// locally administered one, which no vendor assigns.
const (
	macGroupBit = 0x01
	macLocalBit = 0x02
	// macLen is an EUI-48 address; net.ParseMAC also takes EUI-64 and
	// 20-byte InfiniBand addresses, which Ethernet has no room for.
	macLen = 6
)

// MACFromName derives a device's MAC address from its tap's name, when
// none is given: the first 6 bytes of the SHA-256 hash of the name, with
// the group bit cleared (a unicast address) and the locally administered
// bit set (so it cannot clash with a vendor-assigned one). The same name
// always gives the same address, so the guest's view of its network card
// (its DHCP lease, udev's interface name) survives a restart; two taps on
// one bridge get different addresses unless 46 bits of hash collide.
func MACFromName(name string) net.HardwareAddr {
	sum := sha256.Sum256([]byte(name))
	mac := net.HardwareAddr(sum[:macLen:macLen])
	mac[0] = mac[0]&^macGroupBit | macLocalBit
	return mac
}

// checkMAC accepts an address a NIC can own: 6 bytes, unicast, not zero.
func checkMAC(mac net.HardwareAddr) error {
	if len(mac) != macLen {
		return fmt.Errorf("MAC %s is not a 6-byte Ethernet address", mac)
	}
	if mac[0]&macGroupBit != 0 {
		return fmt.Errorf("MAC %s is a multicast address (the lowest bit of its first byte is set); a network card needs a unicast one", mac)
	}
	if string(mac) == "\x00\x00\x00\x00\x00\x00" {
		return fmt.Errorf("MAC %s is all zeros", mac)
	}
	return nil
}

// CheckTapName reports whether name can name a tap interface: Linux takes
// 1 to 15 bytes (IFNAMSIZ, 16, counts the terminating NUL), not "." or
// "..", without '/', ':' or white space (dev_valid_name in
// net/core/dev.c). govmm also refuses '%': the kernel would pick a name
// from a pattern like "tap%d", and the MAC address is derived from the
// name given.
func CheckTapName(name string) error {
	switch {
	case name == "":
		return errors.New("tap name is empty")
	case len(name) >= ifNameSize:
		return fmt.Errorf("tap name %q is %d bytes long; Linux allows at most %d (IFNAMSIZ)", name, len(name), ifNameSize-1)
	case name == "." || name == "..":
		return fmt.Errorf("tap name %q is not allowed", name)
	}
	for _, r := range name {
		if r == '/' || r == ':' || r == '%' || r == 0 || unicode.IsSpace(r) {
			return fmt.Errorf("tap name %q contains %q, which Linux interface names cannot", name, r)
		}
	}
	return nil
}

// ParseNetFlag parses the value of govmm boot's --net flag,
// "tap=NAME[,mac=MAC]": NAME is the tap interface (created if it does not
// exist) and MAC the guest's address in any form net.ParseMAC takes
// (aa:bb:cc:dd:ee:ff). Errors name the part that is wrong.
func ParseNetFlag(s string) (Options, error) {
	var o Options
	var haveTap, haveMAC bool
	for _, part := range strings.Split(s, ",") {
		key, val, ok := strings.Cut(part, "=")
		if !ok {
			return Options{}, fmt.Errorf("--net %q: %q is not KEY=VALUE (want tap=NAME[,mac=MAC])", s, part)
		}
		switch key {
		case "tap":
			if haveTap {
				return Options{}, fmt.Errorf("--net %q: tap= given twice", s)
			}
			if err := CheckTapName(val); err != nil {
				return Options{}, fmt.Errorf("--net %q: %w", s, err)
			}
			o.TapName, haveTap = val, true
		case "mac":
			if haveMAC {
				return Options{}, fmt.Errorf("--net %q: mac= given twice", s)
			}
			mac, err := net.ParseMAC(val)
			if err != nil {
				return Options{}, fmt.Errorf("--net %q: mac=%s is not a MAC address like 02:00:00:00:00:01", s, val)
			}
			if err := checkMAC(mac); err != nil {
				return Options{}, fmt.Errorf("--net %q: %w", s, err)
			}
			o.MAC, haveMAC = mac, true
		default:
			return Options{}, fmt.Errorf("--net %q: unknown key %q (want tap=NAME[,mac=MAC])", s, key)
		}
	}
	if !haveTap {
		return Options{}, fmt.Errorf("--net %q: tap=NAME is required", s)
	}
	return o, nil
}
