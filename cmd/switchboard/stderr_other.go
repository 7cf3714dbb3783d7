//go:build !linux

package main

import (
	"io"
	"os"
)

// guardStderr is a no-op off Linux (development machines): the JSON-only
// stderr guarantee is made for the Linux builds that run in production.
func guardStderr() (io.Writer, func()) { return os.Stderr, func() {} }
