package server

import (
	"net/http"

	"github.com/gin-gonic/gin"
)

func (s *Server) healthz(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"status": "ok"})
}

// readyz is 200 while this process should get new clients: not shutting
// down, and Redis (when configured) answering.
func (s *Server) readyz(c *gin.Context) {
	if s.shuttingDown.Load() {
		c.JSON(http.StatusServiceUnavailable, gin.H{"status": "unavailable", "reason": "shutting down"})
		return
	}
	if s.redis != nil {
		if err := s.redis.ready(); err != nil {
			c.JSON(http.StatusServiceUnavailable, gin.H{"status": "unavailable", "reason": err.Error()})
			return
		}
	}
	c.JSON(http.StatusOK, gin.H{"status": "ok"})
}

func (s *Server) whoami(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"node": s.nodeID})
}
