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
	write("S3-ours.json", report{Servers: serverTotals{RSSPerConnKB: 5}})
	write("S3-peer.json", report{Servers: serverTotals{RSSPerConnKB: 20}})
	write("S4-ours.json", report{Connect: connectReport{PerSecond: 2000, Stalled: 2}})
	write("S5-ours.json", report{Broadcasts: []broadcastReport{{Devices: 10, Received: 10, LastMs: 30}, {Devices: 10, Received: 9, LastMs: 10}, {Devices: 10, Received: 10, LastMs: 20}}})
	write("S5-peer.json", report{Broadcasts: []broadcastReport{{Devices: 10, Received: 10, LastMs: 90}}})
	write("S4-peer.json", report{Connect: connectReport{PerSecond: 800}})
	var out bytes.Buffer
	if err := tableCommand([]string{dir}, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| S3 | RSS per idle websocket connection (KiB) | 5.0 | 20.0 | 0.25 | ≤ 0.35× | yes |",
		"| S4 | connects per second | 2000 | 800 | 2.50 | ≥ 3× | **no** |",
		"| S5 | broadcast to all: until the last has it, median (ms) | 20 | 90 | 0.22 |  |  |",
		"| S5 | broadcast deliveries missing + duplicated | 1 | 0 | – | = 0 | **no** |",
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
