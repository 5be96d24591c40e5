/* Process titles, set by the master for itself and for each child after
 * fork(). ps reads /proc/PID/cmdline, which is the argv area: we move environ
 * out of the way and write the title over argv[0..] (nginx's ngx_setproctitle). */
#include "master/proctitle.h"

#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

extern char **environ;

static char *title_start;
static size_t title_room;

void vb_proctitle_init(int argc, char **argv)
{
    if (argc == 0 || argv[0] == NULL) {
        return;
    }
    char *end = argv[0] + strlen(argv[0]) + 1;
    for (int i = 1; i < argc && argv[i] == end; i++) {
        end = argv[i] + strlen(argv[i]) + 1;
    }
    size_t n = 0;
    while (environ[n] != NULL) {
        n++;
    }
    char **copy = calloc(n + 1, sizeof(char *));
    if (copy == NULL) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (environ[i] == end) {
            end = environ[i] + strlen(environ[i]) + 1;
        }
        copy[i] = strdup(environ[i]);
    }
    environ = copy;
    /* argv[] strings keep working for getopt until the first title is set. */
    title_start = argv[0];
    title_room = (size_t)(end - argv[0]);
}

void vb_proctitle_set(const char *title)
{
    prctl(PR_SET_NAME, title, 0, 0, 0);
    if (title_start == NULL || title_room < 2) {
        return;
    }
    memset(title_start, 0, title_room);
    strncpy(title_start, title, title_room - 1);
}
