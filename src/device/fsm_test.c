/* The state machine as data: FairMQ's table, edge by edge, and the names. */
#include <fabriq/device.h>

#include <criterion/criterion.h>

/* Every edge of FairMQ's table (fairmq/StateMachine.cxx), written out independently. */
static int expected(fq_state s, fq_transition t)
{
#define E(from, tr, to)                                      \
	if (s == FQ_STATE_##from && t == FQ_TRANSITION_##tr) \
		return FQ_STATE_##to;
	E(IDLE, INIT_DEVICE, INITIALIZING_DEVICE)
	E(IDLE, END, EXITING)
	E(INITIALIZING_DEVICE, COMPLETE_INIT, INITIALIZED)
	E(INITIALIZED, BIND, BINDING)
	E(INITIALIZED, RESET_DEVICE, RESETTING_DEVICE)
	E(BINDING, AUTO, BOUND)
	E(BOUND, CONNECT, CONNECTING)
	E(BOUND, RESET_DEVICE, RESETTING_DEVICE)
	E(CONNECTING, AUTO, DEVICE_READY)
	E(DEVICE_READY, INIT_TASK, INITIALIZING_TASK)
	E(DEVICE_READY, RESET_DEVICE, RESETTING_DEVICE)
	E(INITIALIZING_TASK, AUTO, READY)
	E(READY, RUN, RUNNING)
	E(READY, RESET_TASK, RESETTING_TASK)
	E(RUNNING, STOP, READY)
	E(RESETTING_TASK, AUTO, DEVICE_READY)
	E(RESETTING_DEVICE, AUTO, IDLE)
#undef E
	if (t == FQ_TRANSITION_ERROR_FOUND && s != FQ_STATE_EXITING && s != FQ_STATE_ERROR)
		return FQ_STATE_ERROR;
	return -1;
}

Test(fsm, every_pair_of_state_and_transition)
{
	int legal = 0;

	for (int s = 0; s < FQ_STATE_COUNT; s++) {
		for (int t = 0; t < FQ_TRANSITION_COUNT; t++) {
			int want = expected((fq_state)s, (fq_transition)t);

			cr_assert_eq(fq_state_next((fq_state)s, (fq_transition)t), want,
			             "%s --%s-->", fq_state_name((fq_state)s),
			             fq_transition_name((fq_transition)t));
			legal += want >= 0;
		}
	}
	cr_assert_eq(legal, 17 + 12, "17 edges plus ERROR FOUND from 12 states");
	cr_assert_eq(fq_state_next(FQ_STATE_COUNT, FQ_TRANSITION_AUTO), -1);
	cr_assert_eq(fq_state_next(FQ_STATE_IDLE, FQ_TRANSITION_COUNT), -1);
}

Test(fsm, names_are_fairmq_names)
{
	static const char *const states[] = {
	    "IDLE",           "INITIALIZING DEVICE", "INITIALIZED",       "BINDING", "BOUND",
	    "CONNECTING",     "DEVICE READY",        "INITIALIZING TASK", "READY",   "RUNNING",
	    "RESETTING TASK", "RESETTING DEVICE",    "EXITING",           "ERROR",
	};
	static const char *const transitions[] = {
	    "AUTO", "INIT DEVICE", "COMPLETE INIT", "BIND",         "CONNECT", "INIT TASK",
	    "RUN",  "STOP",        "RESET TASK",    "RESET DEVICE", "END",     "ERROR FOUND",
	};

	for (int i = 0; i < FQ_STATE_COUNT; i++) {
		fq_state s;

		cr_assert_str_eq(fq_state_name((fq_state)i), states[i]);
		cr_assert_eq(fq_state_parse(states[i], &s), 0);
		cr_assert_eq(s, i);
	}
	for (int i = 0; i < FQ_TRANSITION_COUNT; i++) {
		fq_transition t;

		cr_assert_str_eq(fq_transition_name((fq_transition)i), transitions[i]);
		cr_assert_eq(fq_transition_parse(transitions[i], &t), 0);
		cr_assert_eq(t, i);
	}
	cr_assert_null(fq_state_name(FQ_STATE_COUNT));
	cr_assert_null(fq_transition_name(FQ_TRANSITION_COUNT));
}

Test(fsm, parse_is_lenient_about_case_and_separators)
{
	fq_state s;
	fq_transition t;

	cr_assert_eq(fq_state_parse("device_ready", &s), 0);
	cr_assert_eq(s, FQ_STATE_DEVICE_READY);
	cr_assert_eq(fq_state_parse("Device-Ready", &s), 0);
	cr_assert_eq(fq_transition_parse("init_task", &t), 0);
	cr_assert_eq(t, FQ_TRANSITION_INIT_TASK);
	cr_assert_eq(fq_state_parse("DEVICE", &s), FQ_EINVAL);
	cr_assert_eq(fq_state_parse("DEVICE READY NOW", &s), FQ_EINVAL);
	cr_assert_eq(fq_transition_parse("", &t), FQ_EINVAL);
	cr_assert_eq(fq_transition_parse(NULL, &t), FQ_EINVAL);
}
