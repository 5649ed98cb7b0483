// Package pki makes and keeps the lab's identities: its CAs, certificates,
// keys, kubeconfigs and SSH keys. Baked images are the same for every
// machine and every lab, so none of this is ever inside an image; it goes
// into each machine's NoCloud seed (builders/seed) through
// PKI.MachineFiles, PKI.HostKey and PKI.AuthorizedKeys, and to the user as
// the admin kubeconfig and known_hosts.
//
// Ensure is called by every build: the first one makes the PKI in
// OUT/pki/, later ones reuse it and only add what new machines need, or
// re-issue a certificate whose names changed. `labbake pki renew` calls
// Renew, `labbake pki status` Status.
//
// The PKI directory (0700; private keys 0600, the rest 0644):
//
//	ca.crt ca.key                      Kubernetes CA (CN kubernetes-ca)
//	etcd/ca.crt etcd/ca.key            etcd CA (CN etcd-ca)
//	front-proxy-ca.crt .key            front-proxy CA (CN kubernetes-front-proxy-ca)
//	apiserver.crt .key                 kube-apiserver serving
//	apiserver-kubelet-client.crt .key  kube-apiserver → kubelets (O=kubeadm:cluster-admins)
//	apiserver-etcd-client.crt .key     kube-apiserver → etcd
//	front-proxy-client.crt .key        kube-apiserver → extension API servers
//	admin, controller-manager, scheduler, kube-proxy .crt .key  kubeconfig clients
//	sa.key sa.pub                      service-account token signing (ECDSA P-256)
//	machines/NAME/kubelet-client.crt .key  system:node:NAME in system:nodes
//	machines/NAME/kubelet.crt .key         kubelet serving
//	machines/NAME/etcd-server.crt .key     etcd member serving (control plane)
//	machines/NAME/etcd-peer.crt .key       etcd member peer (control plane)
//	machines/NAME/ssh_host_ed25519_key .pub  SSH host key
//	ssh/id_ed25519 .pub                the lab's SSH key (unless authorized keys are given)
//
// Inside a control-plane guest (kubeadm's layout), the components' flags:
//
//	kube-apiserver  --client-ca-file=/etc/kubernetes/pki/ca.crt
//	                --tls-cert-file=…/apiserver.crt --tls-private-key-file=…/apiserver.key
//	                --kubelet-client-certificate=…/apiserver-kubelet-client.crt (and .key)
//	                --etcd-cafile=…/etcd/ca.crt --etcd-certfile=…/apiserver-etcd-client.crt (and .key)
//	                --requestheader-client-ca-file=…/front-proxy-ca.crt
//	                --requestheader-allowed-names=front-proxy-client
//	                --proxy-client-cert-file=…/front-proxy-client.crt (and .key)
//	                --service-account-key-file=…/sa.pub --service-account-signing-key-file=…/sa.key
//	kube-controller-manager  --kubeconfig=/etc/kubernetes/controller-manager.conf
//	                --cluster-signing-cert-file=…/ca.crt --cluster-signing-key-file=…/ca.key
//	                --service-account-private-key-file=…/sa.key --root-ca-file=…/ca.crt
//	kube-scheduler  --kubeconfig=/etc/kubernetes/scheduler.conf
//	etcd            --cert-file=…/etcd/server.crt --key-file=…/etcd/server.key
//	                --peer-cert-file=…/etcd/peer.crt --peer-key-file=…/etcd/peer.key
//	                --trusted-ca-file and --peer-trusted-ca-file=…/etcd/ca.crt --client-cert-auth --peer-client-cert-auth
//	kubelet         --kubeconfig=/etc/kubernetes/kubelet.conf --client-ca-file=…/ca.crt
//	                --tls-cert-file=/var/lib/kubelet/pki/kubelet.crt --tls-private-key-file=…/kubelet.key
//	kube-proxy      --kubeconfig=/etc/kubernetes/kube-proxy.conf
//
// The API server's kubelet client is in kubeadm:cluster-admins, not
// system:masters: ClusterAdminsBinding must be applied once the cluster
// is up for `kubectl logs` and `exec` to pass the kubelets' authorization.
package pki
