package main

import (
	"bytes"
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

// procCPU is the user+system CPU time of processes (all their threads).
func procCPU(pids ...int) (time.Duration, error) {
	var sum time.Duration
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return 0, err
		}
		// The command name may hold spaces and parentheses: fields count
		// from the last ')'. After it: state(3) ppid(4) … utime(14) stime(15).
		i := bytes.LastIndexByte(b, ')')
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 13 {
			return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
		}
		ut, err1 := strconv.ParseInt(f[11], 10, 64)
		st, err2 := strconv.ParseInt(f[12], 10, 64)
		if err1 != nil || err2 != nil {
			return 0, fmt.Errorf("/proc/%d/stat: bad utime/stime", pid)
		}
		sum += time.Duration(ut+st) * clockTick
	}
	return sum, nil
}

// childrenOf lists the processes whose parent is pid.
func childrenOf(pid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, p)
		}
	}
	return out
}

// selfCPU is this process's user+system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

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

// hostCPU reads the first line of /proc/stat: the CPU time of the whole
// machine, busy (everything but idle and iowait) and in total.
func hostCPU() (busy, total time.Duration) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0
	}
	for i, v := range f[1:] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			continue
		}
		d := time.Duration(n) * clockTick
		total += d
		if i != 3 && i != 4 { // idle, iowait
			busy += d
		}
	}
	// guest and guest_nice are already counted in user and nice.
	if len(f) > 10 {
		for _, v := range f[9:11] {
			n, _ := strconv.ParseInt(v, 10, 64)
			busy -= time.Duration(n) * clockTick
			total -= time.Duration(n) * clockTick
		}
	}
	return busy, total
}

// procSyscalls sums the read and write system calls of processes
// (/proc/PID/io: syscr, syscw; needs the same user or root).
func procSyscalls(pids ...int) (reads, writes int64, err error) {
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
		if err != nil {
			return 0, 0, err
		}
		for _, line := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			switch k {
			case "syscr":
				reads += n
			case "syscw":
				writes += n
			}
		}
	}
	return reads, writes, nil
}
