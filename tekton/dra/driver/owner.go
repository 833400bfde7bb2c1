package driver

import (
	"context"
	"os"

	v1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
)

// podOwner is who the files a claim's pods read and write are made for: the
// user and group the pods' containers run as, when the pod specs say so.
type podOwner struct {
	uid, gid *int64
}

// podIDs finds the user and group of the pods a claim is reserved for (the
// kubelet prepares a claim once it is reserved for the pod it starts): the
// containers' runAsUser when they all agree, and the pod's fsGroup, else
// the containers' common runAsGroup. Unknown (no such fields, no pod, the
// pod cannot be read) leaves the files readable by every user.
func (d *Driver) podIDs(ctx context.Context, c *resourceapi.ResourceClaim) podOwner {
	var uids, gids []*int64
	for _, r := range c.Status.ReservedFor {
		if r.Resource != "pods" || r.APIGroup != "" || d.cfg.KubeClient == nil {
			continue
		}
		pod, err := d.cfg.KubeClient.CoreV1().Pods(c.Namespace).Get(ctx, r.Name, metav1.GetOptions{})
		if err != nil || pod.UID != r.UID {
			klog.FromContext(ctx).Info("cannot read the claim's pod; its files stay readable by every user", "pod", klog.KRef(c.Namespace, r.Name), "err", err)
			return podOwner{}
		}
		psc := pod.Spec.SecurityContext
		if psc == nil {
			psc = &v1.PodSecurityContext{}
		}
		for _, ctr := range append(append([]v1.Container(nil), pod.Spec.InitContainers...), pod.Spec.Containers...) {
			uid, gid := psc.RunAsUser, psc.RunAsGroup
			if sc := ctr.SecurityContext; sc != nil {
				if sc.RunAsUser != nil {
					uid = sc.RunAsUser
				}
				if sc.RunAsGroup != nil {
					gid = sc.RunAsGroup
				}
			}
			uids = append(uids, uid)
			if psc.FSGroup != nil {
				gid = psc.FSGroup
			}
			gids = append(gids, gid)
		}
	}
	return podOwner{uid: common(uids), gid: common(gids)}
}

// common is the value every entry has, or nil.
func common(ids []*int64) *int64 {
	if len(ids) == 0 || ids[0] == nil {
		return nil
	}
	for _, id := range ids[1:] {
		if id == nil || *id != *ids[0] {
			return nil
		}
	}
	return ids[0]
}

// fileMode is the mode of a file only the pods read: readable by their
// user and group when known, by everyone when not.
func (o podOwner) fileMode() os.FileMode {
	switch {
	case o.uid != nil && o.gid != nil:
		return 0o440
	case o.uid != nil:
		return 0o400
	case o.gid != nil:
		return 0o440
	}
	return 0o444
}

// socketMode is the mode of a socket only the pods use: connecting needs
// write permission, so whoever may read the pods' files may also write it
// (0666 when the pods' user and group are unknown).
func (o podOwner) socketMode() os.FileMode {
	m := o.fileMode()
	return m | (m&0o444)>>1
}

func (o podOwner) chown(path string) error {
	if o.uid == nil && o.gid == nil {
		return nil
	}
	uid, gid := -1, -1
	if o.uid != nil {
		uid = int(*o.uid)
	}
	if o.gid != nil {
		gid = int(*o.gid)
	}
	return os.Chown(path, uid, gid)
}

// lockDir makes dir the pods' lock directory as jsplan's lock code accepts
// it: owned by the pods' user, mode 0700, when known; else a shared
// directory, root's, mode 1777.
func (o podOwner) lockDir(dir string) error {
	if o.uid != nil {
		if err := os.Chown(dir, int(*o.uid), -1); err != nil {
			return err
		}
		return os.Chmod(dir, 0o700)
	}
	return os.Chmod(dir, 0o777|os.ModeSticky)
}
