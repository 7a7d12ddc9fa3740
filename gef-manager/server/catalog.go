package server

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/eudat-gef/gef"
)

func (s *Server) listServices(c *gin.Context) {
	list, err := s.m.Services(c.Request.Context(), principal(c), c.Query("name"))
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, items(list))
}

// getService answers the newest runnable version of a service.
func (s *Server) getService(c *gin.Context) {
	svc, err := s.m.Service(c.Request.Context(), principal(c), c.Param("name"), "")
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, svc)
}

func (s *Server) getServiceVersion(c *gin.Context) {
	svc, err := s.m.Service(c.Request.Context(), principal(c), c.Param("name"), c.Param("version"))
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, svc)
}

func (s *Server) deprecateService(c *gin.Context) {
	req := struct {
		Deprecated *bool `json:"deprecated"`
	}{}
	if c.Request.ContentLength != 0 {
		if err := decode(c, &req); err != nil {
			s.fail(c, err)
			return
		}
	}
	deprecated := req.Deprecated == nil || *req.Deprecated
	svc, err := s.m.DeprecateService(c.Request.Context(), principal(c), c.Param("name"), c.Param("version"), deprecated)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, svc)
}

func (s *Server) listDatasets(c *gin.Context) {
	list, err := s.m.Datasets(c.Request.Context(), principal(c))
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, items(list))
}

func (s *Server) getDataset(c *gin.Context) {
	d, err := s.m.Dataset(c.Request.Context(), principal(c), c.Param("name"))
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, d)
}

func (s *Server) listNodes(c *gin.Context) {
	list, err := s.m.Nodes(c.Request.Context(), principal(c))
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, items(list))
}

func (s *Server) getNode(c *gin.Context) {
	n, err := s.m.Node(c.Request.Context(), principal(c), c.Param("name"))
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, n)
}

func (s *Server) setNodeState(c *gin.Context) {
	var req struct {
		State gef.NodeState `json:"state"`
	}
	if err := decode(c, &req); err != nil {
		s.fail(c, err)
		return
	}
	n, err := s.m.SetNodeState(c.Request.Context(), principal(c), c.Param("name"), req.State)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, n)
}

func (s *Server) setDatasetAccess(c *gin.Context) {
	var a gef.DatasetAccess
	if err := decode(c, &a); err != nil {
		s.fail(c, err)
		return
	}
	d, err := s.m.SetDatasetAccess(c.Request.Context(), principal(c), c.Param("name"), a)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, d)
}

func (s *Server) setServiceNetwork(c *gin.Context) {
	var req struct {
		Allow *bool `json:"allow"`
	}
	if err := decode(c, &req); err != nil {
		s.fail(c, err)
		return
	}
	if req.Allow == nil {
		s.fail(c, gef.Invalid("allow", "is required: true or false"))
		return
	}
	svc, err := s.m.AllowNetwork(c.Request.Context(), principal(c), c.Param("name"), c.Param("version"), *req.Allow)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, svc)
}
