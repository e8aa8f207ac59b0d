package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

// clockTick is the unit of utime and stime in /proc/PID/stat (USER_HZ,
// 100 on every Linux build that matters).
const clockTick = 10 * time.Millisecond

// fdCount is the number of open file descriptors of pid.
func fdCount(pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return -1
	}
	return len(ents)
}

// raiseNoFile lifts this process's open-file limit to at least need (the
// soft limit to the hard one, and the hard one too when allowed). Children
// started afterwards inherit it.
func raiseNoFile(need uint64) (uint64, error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, err
	}
	if l.Max < need {
		up := l
		up.Max, up.Cur = need, need
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &up) == nil {
			return need, nil
		}
	}
	l.Cur = l.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, err
	}
	if l.Cur < need {
		return l.Cur, fmt.Errorf("the open-file limit is %d (hard), the benchmark needs %d: raise it (ulimit -Hn %d, as root) or lower -ws", l.Cur, need, need)
	}
	return l.Cur, nil
}

// noFileOf reads the soft open-file limit of another process.
func noFileOf(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
			f := strings.Fields(rest)
			if len(f) < 2 {
				break
			}
			if f[0] == "unlimited" {
				return 1 << 62, nil
			}
			return strconv.ParseUint(f[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/limits has no open-file limit", pid)
}

// ensureNoFile makes sure process pid may open need files, raising its
// limit with prlimit(2) when it is lower. It returns the limit in force.
func ensureNoFile(pid int, need uint64) (uint64, error) {
	cur, err := noFileOf(pid)
	if err != nil || cur >= need {
		return cur, err
	}
	nl := syscall.Rlimit{Cur: need, Max: need}
	var old syscall.Rlimit
	if _, _, e := syscall.RawSyscall6(syscall.SYS_PRLIMIT64, uintptr(pid), syscall.RLIMIT_NOFILE,
		uintptr(unsafe.Pointer(&nl)), uintptr(unsafe.Pointer(&old)), 0, 0); e != 0 {
		return cur, fmt.Errorf("prlimit pid %d nofile=%d: %w (the daemon's limit is %d)", pid, need, e, cur)
	}
	return noFileOf(pid)
}
