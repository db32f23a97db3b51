#include <fabriq/fabriq.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
	fq_transport *t;
	fq_socket *out, *in;
	fq_msg *m;

	fq_transport_open(&t, "zeromq", NULL);
	fq_socket_open(&in, t, FQ_PULL);
	fq_socket_open(&out, t, FQ_PUSH);
	fq_bind(in, "ipc:///tmp/fabriq-hello.ipc");
	fq_connect(out, "ipc:///tmp/fabriq-hello.ipc");

	fq_msg_alloc(t, 6, &m);
	memcpy(fq_msg_data(m), "hello", 6);
	if (fq_send(out, &m, 0) != 0) /* success: m == NULL, the library owns it */
		fq_msg_free(m);       /* failure: still ours */

	if (fq_recv(in, &m, 0) == 0) { /* the received message is ours */
		printf("%s\n", (char *)fq_msg_data(m));
		fq_msg_free(m);
	}
	fq_socket_close(out);
	fq_socket_close(in);
	fq_transport_close(t);
	return 0;
}
