/* voxbridge entry point: parses the command line, checks or loads the config
 * and becomes the master (or runs a one-shot command such as -t). */
#include "config.h"
#include "common/conf.h"
#include "common/log.h"
#include "master/master.h"
#include "master/migrate.h"
#include "master/proctitle.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define DEFAULT_CONF VB_SYSCONFDIR "/voxbridge/voxbridge.conf"

static void usage(FILE *out)
{
    fprintf(out, "usage: voxbridge [-c FILE]        run in the foreground (master)\n"
                 "       voxbridge -t [-c FILE]     check a config file and exit\n"
                 "       voxbridge migrate [-c FILE] apply the database migrations\n"
                 "       voxbridge --config-keys    print the config key table\n"
                 "       voxbridge -V               print the version\n"
                 "default config: %s\n",
            DEFAULT_CONF);
}

/* Every process inherits three eventfds per call slot, plus its sockets: take
 * the hard limit on open files that systemd (LimitNOFILE) or the shell allows. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int check_readable(const char *path, const char *key, const vb_conf_t *conf)
{
    if (path[0] != '\0' && access(path, R_OK) != 0) {
        fprintf(stderr, "%s: key '%s': cannot read %s\n", conf->path, key, path);
        return -1;
    }
    return 0;
}

static int load(vb_conf_t *conf, const char *path)
{
    char err[512];
    if (vb_conf_load(conf, path, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    vb_conf_finalize(conf);
    if (check_readable(conf->listen_api_tls_cert, "listen_api_tls_cert", conf) < 0 ||
        check_readable(conf->listen_api_tls_key, "listen_api_tls_key", conf) < 0 ||
        check_readable(conf->listen_media_tls_cert, "listen_media_tls_cert", conf) < 0 ||
        check_readable(conf->listen_media_tls_key, "listen_media_tls_key", conf) < 0) {
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"test", no_argument, NULL, 't'},
                                         {"version", no_argument, NULL, 'V'},
                                         {"config-keys", no_argument, NULL, 'K'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *path = DEFAULT_CONF;
    int test_only = 0, c;
    vb_proctitle_init(argc, argv);
    vb_log_init("master");
    while ((c = getopt_long(argc, argv, "c:tVh", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            path = optarg;
            break;
        case 't':
            test_only = 1;
            break;
        case 'V':
            printf("voxbridge %s\n", PACKAGE_VERSION);
            return 0;
        case 'K':
            vb_conf_print_table(stdout);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    int migrate = optind < argc && strcmp(argv[optind], "migrate") == 0;
    vb_conf_t *conf = malloc(sizeof(*conf));
    if (conf == NULL || load(conf, path) < 0) {
        free(conf);
        return 2;
    }
    if (migrate) {
        int rc = vb_migrate_main(conf);
        free(conf);
        return rc;
    }
    if (test_only) {
        printf("%s: ok\n", path);
        free(conf);
        return 0;
    }
    vb_log_set_level(conf->log_level);
    if (conf->log_file[0] != '\0' && vb_log_open_file(conf->log_file) < 0) {
        return 2;
    }
    raise_nofile();
    vb_proctitle_set("voxbridge: master");
    return vb_master_run(conf);
}
