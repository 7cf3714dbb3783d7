package main

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"runtime/debug"
	"syscall"
	"time"
)

// guardStderr keeps the contract that every line on stderr is a JSON object
// with "level" and "msg". The Socket.IO library prints a few plain-text
// lines (recovered panics with their stacks) to the file descriptor it
// captured at start-up; fd 2 becomes a pipe whose plain lines are wrapped in
// JSON. Our own logger writes to the real stderr directly, and fatal crash
// output is sent there too, so nothing is lost if the process dies.
func guardStderr() (io.Writer, func()) {
	orig, err := syscall.Dup(2)
	if err != nil {
		return os.Stderr, func() {}
	}
	real := os.NewFile(uintptr(orig), "stderr")
	r, w, err := os.Pipe()
	if err != nil {
		return os.Stderr, func() {}
	}
	if err := syscall.Dup3(int(w.Fd()), 2, 0); err != nil {
		return os.Stderr, func() {}
	}
	_ = debug.SetCrashOutput(real, debug.CrashOptions{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			_, _ = real.Write(jsonLine(sc.Bytes()))
		}
	}()
	return real, func() {
		// Point fd 2 back at the real stderr, so the pipe's last writer is
		// gone and the copier drains what is left, then stops.
		_ = syscall.Dup3(orig, 2, 0)
		_ = w.Close()
		select {
		case <-done:
		case <-time.After(time.Second):
		}
	}
}

// jsonLine passes a JSON log line through and wraps anything else.
func jsonLine(line []byte) []byte {
	var probe struct {
		Level *string `json:"level"`
		Msg   *string `json:"msg"`
	}
	if json.Unmarshal(line, &probe) == nil && probe.Level != nil && probe.Msg != nil {
		return append(append([]byte{}, line...), '\n')
	}
	out, _ := json.Marshal(map[string]string{
		"time":   time.Now().Format(time.RFC3339Nano),
		"level":  "WARN",
		"msg":    string(line),
		"source": "stderr",
	})
	return append(out, '\n')
}
