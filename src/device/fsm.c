/*
 * FairMQ's state machine as data: the state and transition names, and the transition table.
 * The device (device.c) runs it; this file only answers "where does t lead from s".
 */
#include <fabriq/device.h>

#include <ctype.h>
#include <string.h>

static const char *const state_names[FQ_STATE_COUNT] = {
    [FQ_STATE_IDLE] = "IDLE",
    [FQ_STATE_INITIALIZING_DEVICE] = "INITIALIZING DEVICE",
    [FQ_STATE_INITIALIZED] = "INITIALIZED",
    [FQ_STATE_BINDING] = "BINDING",
    [FQ_STATE_BOUND] = "BOUND",
    [FQ_STATE_CONNECTING] = "CONNECTING",
    [FQ_STATE_DEVICE_READY] = "DEVICE READY",
    [FQ_STATE_INITIALIZING_TASK] = "INITIALIZING TASK",
    [FQ_STATE_READY] = "READY",
    [FQ_STATE_RUNNING] = "RUNNING",
    [FQ_STATE_RESETTING_TASK] = "RESETTING TASK",
    [FQ_STATE_RESETTING_DEVICE] = "RESETTING DEVICE",
    [FQ_STATE_EXITING] = "EXITING",
    [FQ_STATE_ERROR] = "ERROR",
};

static const char *const transition_names[FQ_TRANSITION_COUNT] = {
    [FQ_TRANSITION_AUTO] = "AUTO",
    [FQ_TRANSITION_INIT_DEVICE] = "INIT DEVICE",
    [FQ_TRANSITION_COMPLETE_INIT] = "COMPLETE INIT",
    [FQ_TRANSITION_BIND] = "BIND",
    [FQ_TRANSITION_CONNECT] = "CONNECT",
    [FQ_TRANSITION_INIT_TASK] = "INIT TASK",
    [FQ_TRANSITION_RUN] = "RUN",
    [FQ_TRANSITION_STOP] = "STOP",
    [FQ_TRANSITION_RESET_TASK] = "RESET TASK",
    [FQ_TRANSITION_RESET_DEVICE] = "RESET DEVICE",
    [FQ_TRANSITION_END] = "END",
    [FQ_TRANSITION_ERROR_FOUND] = "ERROR FOUND",
};

/* FairMQ's table (fairmq/StateMachine.cxx), one edge per row. */
static const struct edge {
	fq_state from;
	fq_transition t;
	fq_state to;
} edges[] = {
    {FQ_STATE_IDLE, FQ_TRANSITION_INIT_DEVICE, FQ_STATE_INITIALIZING_DEVICE},
    {FQ_STATE_IDLE, FQ_TRANSITION_END, FQ_STATE_EXITING},
    {FQ_STATE_INITIALIZING_DEVICE, FQ_TRANSITION_COMPLETE_INIT, FQ_STATE_INITIALIZED},
    {FQ_STATE_INITIALIZED, FQ_TRANSITION_BIND, FQ_STATE_BINDING},
    {FQ_STATE_INITIALIZED, FQ_TRANSITION_RESET_DEVICE, FQ_STATE_RESETTING_DEVICE},
    {FQ_STATE_BINDING, FQ_TRANSITION_AUTO, FQ_STATE_BOUND},
    {FQ_STATE_BOUND, FQ_TRANSITION_CONNECT, FQ_STATE_CONNECTING},
    {FQ_STATE_BOUND, FQ_TRANSITION_RESET_DEVICE, FQ_STATE_RESETTING_DEVICE},
    {FQ_STATE_CONNECTING, FQ_TRANSITION_AUTO, FQ_STATE_DEVICE_READY},
    {FQ_STATE_DEVICE_READY, FQ_TRANSITION_INIT_TASK, FQ_STATE_INITIALIZING_TASK},
    {FQ_STATE_DEVICE_READY, FQ_TRANSITION_RESET_DEVICE, FQ_STATE_RESETTING_DEVICE},
    {FQ_STATE_INITIALIZING_TASK, FQ_TRANSITION_AUTO, FQ_STATE_READY},
    {FQ_STATE_READY, FQ_TRANSITION_RUN, FQ_STATE_RUNNING},
    {FQ_STATE_READY, FQ_TRANSITION_RESET_TASK, FQ_STATE_RESETTING_TASK},
    {FQ_STATE_RUNNING, FQ_TRANSITION_STOP, FQ_STATE_READY},
    {FQ_STATE_RESETTING_TASK, FQ_TRANSITION_AUTO, FQ_STATE_DEVICE_READY},
    {FQ_STATE_RESETTING_DEVICE, FQ_TRANSITION_AUTO, FQ_STATE_IDLE},
};

const char *fq_state_name(fq_state s)
{
	return (unsigned)s < FQ_STATE_COUNT ? state_names[s] : NULL;
}

const char *fq_transition_name(fq_transition t)
{
	return (unsigned)t < FQ_TRANSITION_COUNT ? transition_names[t] : NULL;
}

/* "device ready", "DEVICE_READY" and "device-ready" all name DEVICE READY. */
static bool name_equal(const char *given, const char *name)
{
	for (; *given != '\0' && *name != '\0'; given++, name++) {
		char c =
		    *given == '_' || *given == '-' ? ' ' : (char)toupper((unsigned char)*given);

		if (c != *name)
			return false;
	}
	return *given == '\0' && *name == '\0';
}

int fq_state_parse(const char *name, fq_state *out)
{
	if (name == NULL || out == NULL)
		return FQ_EINVAL;
	for (int i = 0; i < FQ_STATE_COUNT; i++) {
		if (name_equal(name, state_names[i])) {
			*out = (fq_state)i;
			return 0;
		}
	}
	return FQ_EINVAL;
}

int fq_transition_parse(const char *name, fq_transition *out)
{
	if (name == NULL || out == NULL)
		return FQ_EINVAL;
	for (int i = 0; i < FQ_TRANSITION_COUNT; i++) {
		if (name_equal(name, transition_names[i])) {
			*out = (fq_transition)i;
			return 0;
		}
	}
	return FQ_EINVAL;
}

int fq_state_next(fq_state s, fq_transition t)
{
	if ((unsigned)s >= FQ_STATE_COUNT || (unsigned)t >= FQ_TRANSITION_COUNT)
		return -1;
	if (t == FQ_TRANSITION_ERROR_FOUND)
		return s == FQ_STATE_EXITING || s == FQ_STATE_ERROR ? -1 : FQ_STATE_ERROR;
	for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++) {
		if (edges[i].from == s && edges[i].t == t)
			return (int)edges[i].to;
	}
	return -1;
}
