package volumes

import (
	"io/fs"
	"syscall"
)

// changeTime is the inode's change time in unix nanoseconds.
func changeTime(fi fs.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ctim.Sec*1e9 + st.Ctim.Nsec
	}
	return fi.ModTime().UnixNano()
}
