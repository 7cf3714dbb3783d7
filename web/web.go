// Package web holds the demo chat page, embedded in the binary so that the
// binary alone serves it, and (in test/) the Node-side tests.
package web

import (
	"embed"
	"io/fs"
)

//go:embed static
var static embed.FS

// Static is the page's files: index.html, its script and styles, and the
// socket.io client built from the npm package.
func Static() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return sub
}
