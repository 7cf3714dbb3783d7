package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTableComparesReports(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, r report) {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("S3-ours.json", report{Servers: serverTotals{RSSPerConnKB: 10}})
	write("S3-peer.json", report{Servers: serverTotals{RSSPerConnKB: 20}})
	write("S4-ours.json", report{Connect: connectReport{PerSecond: 1000, Stalled: 2}})
	write("S4-peer.json", report{Connect: connectReport{PerSecond: 800}})
	var out bytes.Buffer
	if err := tableCommand([]string{dir}, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| S3 | RSS per idle websocket connection (KiB) | 10.0 | 20.0 | 0.50 | ≤ 0.7× | yes |",
		"| S4 | connects per second | 1000 | 800 | 1.25 | ≥ 2× | **no** |",
		"| S4 | stalled connects | 2 | 0 | – | = 0 | **no** |",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "| S1 |") {
		t.Error("rows for a scenario without reports")
	}
	if err := tableCommand([]string{t.TempDir()}, &out); err == nil {
		t.Error("no error for an empty directory")
	}
}
