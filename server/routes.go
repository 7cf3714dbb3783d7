package server

import (
	"io/fs"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
)

// nodeHeader names the process that answered, on every response, so that a
// user (and the cluster tests) can see the balancer at work.
const nodeHeader = "X-Switchboard-Node"

// routes registers every HTTP route of the server, in one place.
func (s *Server) routes(static fs.FS) (*gin.Engine, error) {
	index, err := fs.ReadFile(static, "index.html")
	if err != nil {
		return nil, err
	}
	r := gin.New()
	r.HandleMethodNotAllowed = true
	r.Use(s.recoverPanics, s.logRequests, s.stampNode, s.cors)

	// HEAD answers wherever GET does (net/http drops the body).
	get := func(path string, h gin.HandlerFunc) { r.Match([]string{http.MethodGet, http.MethodHead}, path, h) }
	get("/", func(c *gin.Context) { c.Data(http.StatusOK, "text/html; charset=utf-8", index) })
	get("/static/*file", gin.WrapH(http.StripPrefix("/static/", http.FileServerFS(static))))
	get("/healthz", s.healthz)
	get("/readyz", s.readyz)
	get("/metrics", gin.WrapH(s.metrics.handler()))
	get("/api/whoami", s.whoami)
	r.POST("/api/dev/token", s.devToken)
	r.POST("/api/events", s.apiEvents)
	r.Any("/socket.io/*any", gin.WrapH(s.app.Handler()))

	r.NoRoute(func(c *gin.Context) { apiError(c, http.StatusNotFound, "not_found", "no such route") })
	r.NoMethod(func(c *gin.Context) {
		apiError(c, http.StatusMethodNotAllowed, "method_not_allowed", "method not allowed")
	})
	return r, nil
}

func (s *Server) stampNode(c *gin.Context) {
	c.Header(nodeHeader, s.nodeID)
	c.Next()
}

// recoverPanics turns a handler panic into a logged 500: input must never
// take the process down.
func (s *Server) recoverPanics(c *gin.Context) {
	defer func() {
		if p := recover(); p != nil {
			s.logger.Error("http handler panicked", "path", c.Request.URL.Path, "panic", p)
			if !c.Writer.Written() {
				apiError(c, http.StatusInternalServerError, "internal", "internal error")
			}
			c.Abort()
		}
	}()
	c.Next()
}

func (s *Server) logRequests(c *gin.Context) {
	if !s.logger.Enabled(c.Request.Context(), slog.LevelDebug) {
		c.Next()
		return
	}
	start := time.Now()
	c.Next()
	s.logger.Debug("http", "method", c.Request.Method, "path", c.Request.URL.Path,
		"status", c.Writer.Status(), "duration", time.Since(start))
}

// allowOrigin is the CORS policy: CORS_ORIGINS, where "*" allows any.
func (s *Server) allowOrigin(origin string) bool {
	return slices.Contains(s.cfg.CORSOrigins, "*") ||
		slices.ContainsFunc(s.cfg.CORSOrigins, func(o string) bool { return strings.EqualFold(o, origin) })
}

// cors answers for the HTTP API; the Engine.IO routes get the same policy
// from the Socket.IO library, which also checks websocket upgrades.
func (s *Server) cors(c *gin.Context) {
	origin := c.GetHeader("Origin")
	if origin == "" || strings.HasPrefix(c.Request.URL.Path, "/socket.io/") {
		c.Next()
		return
	}
	c.Writer.Header().Add("Vary", "Origin")
	if !s.allowOrigin(origin) {
		c.Next()
		return
	}
	h := c.Writer.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Allow-Credentials", "true")
	h.Set("Access-Control-Expose-Headers", nodeHeader)
	if c.Request.Method == http.MethodOptions && c.GetHeader("Access-Control-Request-Method") != "" {
		h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
		h.Set("Access-Control-Max-Age", "600")
		c.AbortWithStatus(http.StatusNoContent)
		return
	}
	c.Next()
}
