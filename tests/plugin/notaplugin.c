/* A shared object without the plugin descriptor. */
int fq_test_not_a_plugin(void);

int fq_test_not_a_plugin(void)
{
	return 42;
}
