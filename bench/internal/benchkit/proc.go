package benchkit

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Proc is a helper process a benchmark starts (a server under test, a
// baseline such as nginx or redis-server): in its own process group, so a
// Ctrl-C on the terminal reaches only the benchmark, which then stops it in
// order; with SIGTERM as its parent-death signal, should the benchmark be
// killed outright; stdout and stderr to a log file.
type Proc struct {
	Name string
	Log  string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// StartProc starts cmd (whose Stdout and Stderr it sets to the file
// logPath) as described on Proc.
func StartProc(name, logPath string, cmd *exec.Cmd) (*Proc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGTERM
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, Log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	return p, nil
}

// PID is the process's id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Done is closed when the process has ended.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Err is how the process ended (valid once Done is closed).
func (p *Proc) Err() error { return p.err }

// Stop ends the process if it still runs: SIGTERM, then SIGKILL to its
// whole process group after grace. Safe to call twice and on nil.
func (p *Proc) Stop(grace time.Duration) {
	if p == nil || p.Exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(grace):
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// LogTail is the last n lines of the process's log.
func (p *Proc) LogTail(n int) string {
	b, _ := os.ReadFile(p.Log)
	return tail(string(b), n)
}

// clockTick is the unit of utime and stime in /proc/PID/stat (USER_HZ, 100
// on every Linux build that matters).
const clockTick = 10 * time.Millisecond

// ProcCPU is the user+system CPU time of processes (all their threads),
// from /proc/PID/stat.
func ProcCPU(pids ...int) (time.Duration, error) {
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

// ChildrenOf lists the processes whose parent is pid (e.g. nginx's
// workers).
func ChildrenOf(pid int) []int {
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

// SelfCPU is this process's user+system CPU time.
func SelfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// HostCPU reads the first line of /proc/stat: the CPU time of the whole
// machine, busy (everything but idle and iowait) and in total.
func HostCPU() (busy, total time.Duration) {
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

// ProcSyscalls sums the read and write system calls of processes
// (/proc/PID/io: syscr, syscw; needs the same user or root). Socket calls
// that bypass read/write (recvfrom, sendto, sendmsg…) are not in them.
func ProcSyscalls(pids ...int) (reads, writes int64, err error) {
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
