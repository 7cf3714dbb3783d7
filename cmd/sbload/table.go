package main

import "io"

func tableCommand(args []string, w io.Writer) error { return nil }
