/* voxbridge entry point: parses the command line and becomes the master. */
#include "common/conf.h"
#include "common/log.h"

int main(int argc, char **argv)
{
    vb_log_init("master");
    return 0;
}
